"""Each paper's experiments: tables, sweeps, harnesses, figure measurements and claim checks, built on the
defenses (``decoylab.defenses``) and the attack engine (``decoylab.attacks``). ``compare`` builds every defense on
one base network; ``detection`` measures each beside its control and under adaptive attacks; ``sweeps`` caches a
sweep point."""
