"""The offline lab: prepares and judges models, never runs in a stream.

Training (``train``, ``policy_training``, ``datasets``), the anytime optimisation
(``anytime``), the conversion table (``table``), Dynamic Confidence's calibration
(``calibrate``) and the comparison of exit policies (``evaluate``). The lab imports the
streaming core; the core never imports the lab.
"""
