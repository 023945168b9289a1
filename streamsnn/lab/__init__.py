"""The offline lab: prepares and judges models, never runs in a stream.

Training (``train``, ``policy_training``, ``datasets``), the anytime optimisation
(``anytime``), the conversion table (``table``), Dynamic Confidence's calibration
(``calibrate``), the comparison of exit policies (``evaluate``) and the live benchmark
(``live``). The lab imports the streaming core; the core never imports the lab.
"""
