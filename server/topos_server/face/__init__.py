"""Face front-end: image decoding, BlazeFace detection and the 468 FaceMesh landmarks (LiteRT).

MediaPipe's models (Apache-2.0) are run with Google's LiteRT runtime; the pre- and
post-processing reproduces MediaPipe's FaceMesh graphs (see landmarks.py / detection.py).
"""

from topos_server.face.crop import FaceRegion
from topos_server.face.detection import BlazeFaceDetector, FaceDetection
from topos_server.face.image_loading import DecodedImage, decode_image, load_image
from topos_server.face.landmarks import FaceLandmarker, FaceLandmarks

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
