"""visionnets: neural nets for vision, after the CVPR 2012 tutorial (Ranzato, part II).

Big non-linear systems built from simple differentiable blocks, trained from raw pixels to
labels (and without labels), on one machine or many. See README.md and docs/ARCHITECTURE.md.
"""

__version__ = "0.1.0"
