"""Generates tests/train/pil_bicubic_ref.json: Pillow's resize_crop_to_fill (the reference's image
path, opensora/datasets/utils.py) on synthetic RGB images, for data_test.ts.

Run with a Python that has Pillow and NumPy:  python3 tests/train/gen_pil_reference.py
"""
import json
import os

import numpy as np
import PIL
from PIL import Image


def synth(h, w):
    # Must match synthImage() in tests/train/_synthetic.ts.
    y, x = np.mgrid[0:h, 0:w]
    chans = [(x * 37 + y * 91 + c * 53 + ((x * y) % 7) * 20) % 256 for c in range(3)]
    return np.stack(chans, -1).astype(np.uint8)


def resize_crop_to_fill(pil_image, image_size):
    # Copy of the reference function.
    w, h = pil_image.size
    th, tw = image_size
    rh, rw = th / h, tw / w
    if rh > rw:
        sh, sw = th, round(w * rh)
        image = pil_image.resize((sw, sh), Image.BICUBIC)
        i = 0
        j = int(round((sw - tw) / 2.0))
    else:
        sh, sw = round(h * rw), tw
        image = pil_image.resize((sw, sh), Image.BICUBIC)
        i = int(round((sh - th) / 2.0))
        j = 0
    arr = np.array(image)
    assert i + th <= arr.shape[0] and j + tw <= arr.shape[1]
    return arr[i : i + th, j : j + tw]


CASES = [
    (13, 17, 6, 8),  # mild down-scale, both sides
    (20, 9, 8, 8),  # crop rows, offset round(10/2)
    (5, 7, 12, 10),  # up-scale, crop columns at round(3.5) = 4 (half to even)
    (40, 50, 8, 6),  # strong down-scale (widened kernel)
    (8, 20, 8, 10),  # no resize, crop only
    (31, 23, 16, 16),  # odd sizes
]

out = {"pillow": PIL.__version__, "cases": []}
for h, w, th, tw in CASES:
    img = Image.fromarray(synth(h, w), "RGB")
    arr = resize_crop_to_fill(img, (th, tw))
    out["cases"].append({"h": h, "w": w, "th": th, "tw": tw, "rgb": arr.reshape(-1).tolist()})

path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pil_bicubic_ref.json")
with open(path, "w") as f:
    json.dump(out, f, separators=(",", ":"))
print("wrote", path)
