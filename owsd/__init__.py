"""owsd: One Way Scrambling by Deconvolution (Savransky, Mateless, Katz, arXiv 2111.03125).

The scheme: an encoder turns an image into an embedding; a transposed-convolution
network whose random weights are the secret key turns the embedding into a scrambled
image; a cloud classifier returns its output vector; an internal model trained on
those vectors predicts the label.
"""

import logging

from owsd import threads as _threads

_threads.passive_waiting()  # before anything starts an OpenMP runtime (torch's, BLAS's)

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
