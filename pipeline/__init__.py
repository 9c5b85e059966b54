"""The DVC stages (one module each) and the Ray glue. The only code that reads params.yaml or imports ray/dvc."""
