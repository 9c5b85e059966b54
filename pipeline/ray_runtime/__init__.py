"""Everything that knows Ray lives in this package; nothing else in the project imports ray.

- ``cluster``: start or join a cluster (``ray_session``), where Ray keeps a run (``storage_uri``,
  ``clear_run``), and the Pool that spreads data preparation (``cluster_pool``);
- ``training``: Ray Train: the TorchTrainer that runs a per-worker training function (``train``,
  ``make_trainer``) and a worker's view of Ray (``TRAIN_WORKER``);
- ``tuning``: Ray Tune: Tune's search space over ``pipeline.sweep_space``'s points (``search_space``), the
  Tuner (``make_tuner``), ASHA, and the trials' outcomes as ``sweep_space.TrialOutcome`` records (``run_sweep``);
- ``trial``: inside a Tune trial: training in the trial's own process (``TUNE_TRIAL``) or driving a Train
  run (``fit_trial``);
- ``serving``: Ray Serve: the model server's deployment over ``pipeline.serving.http_api``.

Separate modules so that a stage depends only on what it runs: the prepare stage needs only the Pool,
the train stage Train but not Tune, and no stage the server.
This file imports nothing: ``import pipeline.ray_runtime.cluster`` loads only what it names.
"""
