/** Usage texts of the CLI commands. */
import { DEVICES, DTYPES, GRAPH_TUNING_PASSES } from '../../../common/protocol';

import { DAEMON_ENV, DAEMON_NODE_FLAGS, NODE_FLAGS_ENV } from '../daemon/nodeFlags';
import { PRESET_NAMES } from '../testmodel';

export const PRESETS = PRESET_NAMES;

export const MAIN_USAGE = `Usage: llava-lens <command> [options]

Ask a local LLaVA-family model about images.

Commands:
  ask <image>... -q "<question>"   answer a question about images (streams to stdout)
  demo                            ask about a generated sample diagram
  ocr <image> [--json]            read the text in an image (PP-OCRv4), in reading order
  pull <repo> [--dtype P]         download a model from the Hugging Face Hub (pull --list: known-good ones)
  make-test-model <dir> --preset P write a small random-weight model for tests
  serve --stdio                   run the daemon (JSON-RPC, see docs/protocol.md)

Run "llava-lens <command> --help" for a command's options.
Without --model (or LLAVA_LENS_MODEL) the embedded tiny test model is used: its answers carry no meaning.
`;

export const ASK_USAGE = `Usage: llava-lens ask <image>... -q "<question>" [options]

Options:
  -q, --question TEXT         the question (required)
  --model DIR                 model folder (default: $LLAVA_LENS_MODEL, else the embedded tiny test model)
  --device D                  ${DEVICES.join(' | ')} (default auto)
  --dtype D                   ${DTYPES.join(' | ')}, or per file:
                              --dtype vision_encoder=fp16,decoder_model_merged=q4
  --no-graph-tuning           load the model files as they are (no load-time graph tuning)
  --tuning-off P[,P...]       switch these tuning passes off, keep the others:
                              ${GRAPH_TUNING_PASSES.join(' | ')}
                              (int8Activations, int8Vision: faster, not bit-exact; docs/performance.md)
  --max-tokens N              answer length limit in tokens (default 256)
  --temperature T             0 = greedy (default 0)
  --top-k K                   0 = off (default 0)
  --top-p P                   in (0, 1]; 1 = off (default 1)
  --repetition-penalty R      > 0; 1 = off (default 1)
  --seed S                    sampler seed, for reproducible sampling
  --stop S                    stop string (repeatable)
  --tools                     let the model call tools (ocr, zoom, image_info, grid) in a loop; one image;
                              each step is traced on stderr
  --max-steps N               with --tools: most tool-calling turns (default 4)
  --explain screenshot|diagram  run OCR first and explain the image as a UI or a diagram
  --json                      print one JSON object {text, tokenIds, finishReason, timings, device, model}
                              (plus steps: [...] with --tools / --explain)
  -h, --help                  this help

Shared daemon over WebSocket ("llava-lens serve --ws <port>" elsewhere):
  --connect URL               ask the daemon at ws://host:port or wss://host:port instead of starting one;
                              the images are sent as bytes; its loaded model answers unless --model names
                              a folder ON THE DAEMON'S MACHINE to load (that replaces the model for every
                              client); --device, --dtype and the tuning flags need --model; LLAVA_LENS_MODEL is not used
  --token-file F              file whose first line is the daemon's token
  --token T                   the token itself (visible to other local users in the process list; prefer
                              --token-file or LLAVA_LENS_TOKEN)
                              token order: --token, --token-file, $LLAVA_LENS_TOKEN
  --tls-ca F                  PEM certificate to trust for wss:// (e.g. the daemon's self-signed one)

OpenAI-compatible server (vLLM, SGLang, llama.cpp's server, Ollama, or "serve --ws"'s /v1; docs/backends.md):
  --backend openai            generate there instead of with a local model (tools still run here)
  --base-url URL              its API, e.g. http://127.0.0.1:11434/v1 (Ollama), http://gpu-box:8000/v1 (vLLM)
  --model NAME                the server's model id (default: the first it lists)
  --api-key-env VAR           environment variable holding its API key (or --api-key K, visible in the
                              process list)
  --backend-tools api|prompt  with --tools: offer them as OpenAI tools (default) or in a system prompt
                              (for servers or models without tool calling, e.g. Ollama's llava)

The answer streams to stdout; model progress and timings go to stderr.
Ctrl-C once cancels the answer (what was generated is kept), twice quits.
Exit codes: 0 ok, 1 error, 2 usage error.
`;

export const DEMO_USAGE = `Usage: llava-lens demo [--model DIR] [--device D] [--dtype D] [--out FILE]

Draws a sample diagram (PNG), asks "What does this diagram show?" about it, streams the answer
and prints a timings table. Uses the embedded tiny test model unless --model or LLAVA_LENS_MODEL
names a real one.

Options:
  --model DIR     model folder
  --device D      ${DEVICES.join(' | ')}
  --dtype D       precision (see "llava-lens ask --help")
  --no-graph-tuning, --tuning-off P[,P...]
                  load-time graph tuning (see "llava-lens ask --help")
  --out FILE      where to write the sample image (default: a temporary file)
  -h, --help      this help
`;

export const MAKE_TEST_MODEL_USAGE = `Usage: llava-lens make-test-model <dir> --preset ${PRESETS.join('|')} [options]

Writes a small LLaVA-family model with random weights (config, tokenizer, ONNX files) into <dir>.
Its answers carry no meaning; it exists for tests, benchmarks and the demo.

Options:
  --preset P          ${PRESETS.join(' | ')} (required)
  --config JSON|@FILE overrides of the preset's dimensions, as JSON or @path/to/file.json
  --seed N            weight seed (default: the preset's)
  --external-data     store weights in .onnx_data files next to the graphs
  --variants LIST     extra precisions to write, e.g. fp16,q4
  -h, --help          this help
`;

export const OCR_USAGE = `Usage: llava-lens ocr <image> [--json] [--connect URL --token-file F]

Reads the text in an image with the daemon's ocr tool (PaddleOCR PP-OCRv4 detection + recognition);
no model is loaded. Prints the text in reading order (one row a line, cells of a row tab-separated).

Options:
  --json       print {lines: [{text, box: [x0, y0, x1, y1] (normalised 0..1), score}], ms}
  --connect URL, --token T, --token-file F, --tls-ca F
               run it on a shared daemon over WebSocket (see "llava-lens ask --help")
  -h, --help   this help
`;

export const SERVE_USAGE = `Usage: llava-lens serve --stdio | --node-ipc | --ws PORT [options]

Runs the LLaVA Lens daemon, speaking JSON-RPC (see docs/protocol.md).
  --stdio      one client on stdin/stdout, LSP framing (logs on stderr)
  --node-ipc   one client on the Node IPC channel (when started with child_process.fork)
  --ws PORT    a shared daemon: many clients over WebSocket (one JSON-RPC message per text
               frame), each sending "Authorization: Bearer <token>" (0 = any free port)

Shared daemon (--ws):
  --host H                 address to bind (default 127.0.0.1); anything but loopback needs
  --allow-remote           ... this flag, and then remote clients send image bytes, never paths
  --tls-cert F --tls-key F serve wss:// with this PEM certificate and key
  --allow-origin O         accept browser pages from origin O (repeatable; default none)
  --model DIR              load this model at start (its parent folder becomes a model root)
  --model-root DIR         folders clients may load models from (repeatable)
  --device D, --dtype P    for --model
  --max-history-turns N    user turns a conversation keeps
  --max-kv-mb N            KV cache kept over all conversations (default 2048); the least
  --max-kv-mb-per-client N ... recently used caches go first and are recomputed when resumed
  --max-connections N      open connections (default 64)
  --max-message-bytes N    largest WebSocket message (default 67108864)
  --keep-conversations-minutes N
                           keep a disconnected client's conversations this long (default 30)
  Token: LLAVA_LENS_TOKEN, else the file "token" in the state folder, made at first start
  (owner-only). Clients: llava-lens ask --connect ws://HOST:PORT --token-file <that file>.
  The same port serves an OpenAI-compatible API (http://HOST:PORT/v1: POST /chat/completions,
  GET /models) with the token as the Bearer key (docs/backends.md).

Every mode:
  --backend openai         generate on an OpenAI-compatible server instead of a local model
  --base-url URL           ... its API, e.g. http://127.0.0.1:8000/v1 (vLLM, SGLang),
                           http://127.0.0.1:11434/v1 (Ollama), http://127.0.0.1:8080/v1 (llama.cpp)
  --backend-model NAME     ... the model id it serves (required)
  --api-key-env VAR        ... the environment variable holding its API key
  --backend-tools api|prompt  tool loop: OpenAI tools (default), or a system prompt for
                           servers or models without tool calling
  --no-graph-tuning        local engine: load models without load-time graph tuning
  --tuning-off P[,P...]    ... or with these passes off: ${GRAPH_TUNING_PASSES.join(', ')}
                           (the default for --model and for loads whose client names none;
                           a client's graphTuning wins; the applied tuning is logged)
  --state-dir D            state folder (default $LLAVA_LENS_STATE_DIR, else ~/.local/state/llava-lens)
  --no-persist             keep conversations in memory only (default: one file per
                           conversation in the state folder, so a restart continues them;
                           files unused for 7 days are deleted)
  --queue-limit N          requests waiting behind the running one (default 16)
  --max-image-bytes N      largest image (default 67108864)
  --max-image-megapixels N largest decoded image (default 50)
  --max-prompt-tokens N    largest new prompt part of one turn (default: the context)
  --max-new-tokens N       largest maxTokens of one ask (default 4096)
  --max-conversations N    conversations one client keeps in memory (default 64); older
                           ones leave memory and come back from disk when used
  --requests-per-minute N  per client; 0 = unlimited (default 600 with --ws, else 0)

Node flags: the daemon runs under "node ${DAEMON_NODE_FLAGS.join(' ')}" (docs/performance.md, "Node flags"),
on Linux with GLIBC_TUNABLES=${DAEMON_ENV.GLIBC_TUNABLES}
(glibc malloc; keys you set in GLIBC_TUNABLES win). Started without them, serve runs the daemon in
a child process started with them (stdio, signals and exit code passed through).
${NODE_FLAGS_ENV}=none: no flags, no tunables, no child process.
`;

export const PULL_USAGE = `Usage: llava-lens pull <owner/name> [--revision R] [--dtype P] [--models-dir D]
       llava-lens pull --list

Downloads a LLaVA-family ONNX model from the Hugging Face Hub into <models>/<owner>/<name>: only the
files the chosen precisions need (config, tokenizer, chat template, one ONNX graph per file with its
external data), each verified against the Hub's size and SHA-256. An interrupted pull resumes where
it stopped; the model folder appears only when every file is complete. Progress goes to stderr, the
model folder's path to stdout.

Options:
  --list              the catalogue of known-good repositories, with approximate sizes
  --revision R        branch, tag or commit (default main)
  --dtype P           precision for every file (${DTYPES.join(' | ')}), or per file:
                      --dtype vision_encoder=fp16,embed_tokens=fp16,decoder_model_merged=q4
                      (default: the catalogue's first choice, else fp16 vision and embeddings, q4 decoder)
  --models-dir D      where models go (default $LLAVA_LENS_MODELS_DIR, else <cache>/models,
                      cache = $LLAVA_LENS_CACHE, else ~/.cache/llava-lens)
  -h, --help          this help

Environment:
  HF_ENDPOINT         a Hub mirror, e.g. https://hf-mirror.com (default https://huggingface.co)
  HF_TOKEN            access token for gated and private repositories (else the huggingface-cli login
                      token file); sent to HF_ENDPOINT's host only, never to a host it redirects to
  HTTPS_PROXY, HTTP_PROXY, NO_PROXY   proxies (http:// proxies; https goes through CONNECT)

Ctrl-C cancels; the next pull resumes. Exit codes: 0 ok, 1 error, 2 usage error, 130 cancelled.
`;
