"""alpr-edge: ALPR edge processing with a policy gate that enforces who may receive reads.

Data flow, one subpackage per stage:

    sources/ -> vision/ (detect -> rectify -> OCR -> track + vote) -> node/ (edge node loop)
      -> transport/ (outbox + MQTT) -> policy/ (registry, rules, gate, audit) -> agencies

synth/ renders plates and scenes (training data and deployment simulation), training/ holds the
torch training code (the `train` extra, never imported at run time), bench/ the benchmarks.
"""

__version__ = "0.1.0"
