"""The DVC stages, one module each (prepare, reference, sweep, train, evaluate, export), ``summary`` (what
``make run`` prints last) and what they share (``params``, ``worker``, ``live``, ``sweep_space``,
``sweep_trial``, ``sweep_report``); the Ray glue (``ray_runtime``); the model server and its client
(``serving``); tools run by hand (``tools``). The only code that reads params.yaml or imports ray/dvc."""
