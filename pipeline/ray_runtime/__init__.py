"""Everything that knows Ray lives in this package; nothing else in the project imports ray.

- ``cluster``: start or join a cluster (``ray_session``), where Ray keeps a run (``storage_uri``,
  ``clear_run``), and the Pool that spreads data preparation (``cluster_pool``);
- ``training``: Ray Train and Ray Tune: the TorchTrainer that runs a per-worker training function
  (``train``, ``make_trainer``), a worker's view of Ray (``worker_rank``, ``worker_device``,
  ``restored_checkpoint``, ``report``), and the Tuner whose trials are Train runs (``make_tuner``).

Two modules so that the prepare stage, which needs only the Pool, does not depend on the training code.
This file imports nothing: ``import pipeline.ray_runtime.cluster`` loads only what it names.
"""
