"""Each paper's experiments: tables, sweeps, harnesses and figure measurements, built on the defenses
(``decoylab.defenses``) and the attack engine (``decoylab.attacks``); the comparison across papers
lives in ``experiments.compare``."""
