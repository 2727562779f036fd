/**
 * The built-in training text for the test tokenizer's BPE merges: plain English about images,
 * diagrams, screenshots and charts, plus a little code. Changing it changes every generated
 * tokenizer (and therefore every golden token id downstream), so treat it as frozen.
 */
export const CORPUS = `
An image is a grid of pixels. Each pixel has a red, a green and a blue value, and together they
describe the colour of one small square of the picture. When you ask a question about an image,
the model first looks at the whole picture, then at the parts that matter for the question.

The image shows a cat sitting on a wooden table next to a window. The light comes from the left
side of the picture, and the shadow of the cat falls on the table. In the background there is a
plant in a white pot. The cat is looking at the camera.

A diagram explains how the parts of a system fit together. Boxes stand for components, arrows
show the direction in which data flows, and labels name each step. This diagram shows a client
that sends a request to a server; the server reads the image, runs the vision encoder, and
returns the answer to the client. The arrow from the server to the database is dashed, which
means the call is optional.

A screenshot captures what was on the screen at one moment. This screenshot shows a code editor
with a file open on the left and a terminal at the bottom. The terminal prints an error message:
"TypeError: cannot read properties of undefined (reading 'length')". The cursor is on line 42,
where the function returns the value of a variable that was never set.

A chart turns numbers into shapes. The bar chart compares the sales of four products over three
years; the tallest bar belongs to the second product in the last year. The line chart shows the
temperature during one week, rising from 12 degrees on Monday to 21 degrees on Friday before it
falls again. The pie chart has five slices, and the largest slice covers about forty percent.
Read the title, the axis labels and the legend before you read the values.

When you describe a picture, start with the main subject, then mention the setting, the colours,
the text you can read, and anything unusual. If the question asks for a single word or phrase,
answer with a single word or phrase. If you are not sure, say what you can see and what you
cannot see. Count the objects carefully: there are three red apples and two green apples in the
bowl, so there are five apples in total.

function countPixels(image, threshold) {
  let count = 0;
  for (let y = 0; y < image.height; y++) {
    for (let x = 0; x < image.width; x++) {
      const value = image.data[y * image.width + x];
      if (value > threshold) count += 1;
    }
  }
  return count;
}

def resize_image(image, size):
    """Resize the image so that its shortest side has the given size."""
    width, height = image.size
    scale = size / min(width, height)
    return image.resize((round(width * scale), round(height * scale)))

class ImageProcessor:
    def __init__(self, mean, std):
        self.mean = mean
        self.std = std

    def normalize(self, pixels):
        return [(p - m) / s for p, m, s in zip(pixels, self.mean, self.std)]

The user asked: What is written on the sign? The assistant answered: The sign says "Open from
9 to 5". The user asked: Where is the text in the screenshot? The assistant answered: The text
is in the top right corner of the window, inside a blue button. The user asked: What does the
chart show? The assistant answered: The chart shows that the number of users grew every month.

Tools help the assistant see more detail. An OCR tool reads the text in an image and returns
the words with their boxes. A grounding tool finds the object that a phrase refers to and
returns a box with four numbers: the left, top, right and bottom of the region. A caption tool
writes a short description of the whole image. The assistant calls a tool, reads its output, and
then answers the question in plain words.
`;
