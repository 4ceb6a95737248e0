"""Face front-end: image decoding, BlazeFace detection and the 468 FaceMesh landmarks (LiteRT).

MediaPipe's models (Apache-2.0) are run with Google's LiteRT runtime; the pre- and
post-processing reproduces MediaPipe's FaceMesh graphs (see landmarks.py / detection.py).
"""

from .detection import BlazeFaceDetector, FaceDetection
from .image_loading import DecodedImage, decode_image, load_image
from .landmarks import FaceLandmarker, FaceLandmarks, FaceRegion

__all__ = [
    "BlazeFaceDetector",
    "DecodedImage",
    "FaceDetection",
    "FaceLandmarker",
    "FaceLandmarks",
    "FaceRegion",
    "decode_image",
    "load_image",
]
