import pytest

from gans.config import ConfigError, GANConfig, OptimConfig
from gans.loop import check_config
from pipeline.params import parse_params


def test_defaults_are_valid_and_ttur_ratio():
    cfg = GANConfig()
    assert cfg.image_shape == (1, 32, 32)
    assert OptimConfig(lr_g=1e-4, lr_d=4e-4).ttur_ratio == pytest.approx(4.0)


def test_unknown_key_names_the_key_and_the_allowed_keys():
    with pytest.raises(ConfigError, match=r"Unknown key optim\.lr_gg; allowed keys: lr_g, lr_d"):
        GANConfig.from_dict({"optim": {"lr_gg": 0.1}})


@pytest.mark.parametrize(
    "params, message",
    [
        ({"optim": {"lr_g": -1e-4}}, r"optim\.lr_g=-0\.0001 must be in \(0, 1\)"),
        ({"optim": {"betas_d": [0.5]}}, r"optim\.betas_d=\[0\.5\] must be a list of 2 values"),
        ({"model": {"name": "stylegan9"}}, r"model\.name='stylegan9' is not valid; allowed values: dcgan, mlp, sagan"),
        ({"loss": {"name": "bcee"}}, r"loss\.name='bcee' is not valid; allowed values: bce, hinge, lsgan, wgan-gp"),
        ({"data": {"channels": 2}}, r"data\.channels=2 is not valid; allowed values: 1, 3"),
        (
            {"data": {"resolution": 48}},
            r"data\.resolution=48 is not supported by model 'dcgan'; allowed values: 32, 64, 128",
        ),
        ({"train": {"steps": "many"}}, r"train\.steps='many' must be an integer"),
        ({"loss": {"label_smoothing": 0.7}}, r"loss\.label_smoothing=0\.7 must be in \[0, 0\.5\)"),
    ],
)
def test_bad_values_fail_at_load_with_key_and_allowed_values(params, message):
    """Values are checked when the config is built; names of models and losses by ``check_config``, which
    the train stage calls right after loading (and ``fit`` before anything else)."""
    with pytest.raises(ConfigError, match=message):
        check_config(GANConfig.from_dict(params))


def test_mlp_accepts_any_resolution():
    cfg = GANConfig.from_dict({"model": {"name": "mlp"}, "data": {"resolution": 20}})
    check_config(cfg)
    assert cfg.image_shape == (1, 20, 20)


def test_dataclass_defaults_are_the_committed_params_yaml():
    """One source of truth: GANConfig() in a notebook is the run `dvc repro` makes (a drift fails here)."""
    import dataclasses

    from pipeline.params import Params, load_params

    committed = load_params()
    for section in dataclasses.fields(Params):
        assert getattr(committed, section.name) == getattr(Params(), section.name), f"params.yaml {section.name}"


def test_prepare_checks_source_and_crop_names():
    from gans.config import DataConfig
    from gans.prepare.stream import check_source_and_crop

    with pytest.raises(ConfigError, match=r"^data\.crop='mtcn' is not valid; allowed values: center, mtcnn, none\.$"):
        check_source_and_crop(DataConfig(crop="mtcn"))
    with pytest.raises(ConfigError, match=r"^data\.source='lfw' is not valid; allowed values: celeba, cifar10, digits"):
        check_source_and_crop(DataConfig(source="lfw"))


def test_params_reject_unknown_sections_and_keys():
    with pytest.raises(ConfigError, match=r"Unknown params section 'optimiser'"):
        parse_params({"optimiser": {}})
    with pytest.raises(ConfigError, match=r"Unknown key ray\.workers; allowed keys: address, num_workers"):
        parse_params({"ray": {"workers": 2}})
    with pytest.raises(ConfigError, match=r"ray\.placement_strategy='ANY'"):
        parse_params({"ray": {"placement_strategy": "ANY"}})


def test_the_torch_backend_is_nccl_on_gpus_and_gloo_on_cpus_explicitly():
    """Ray Train gets the backend from us (TorchConfig), not from its default."""
    from pipeline.params import RayConfig
    from pipeline.ray_runtime import training

    for use_gpu, backend in ((True, "nccl"), (False, "gloo")):
        trainer = training.make_trainer(
            lambda config: None, {}, RayConfig(num_workers=2, use_gpu=use_gpu)
        )  # builds, starts nothing
        assert training.torch_backend(RayConfig(use_gpu=use_gpu)) == trainer.backend_config.backend == backend


def test_the_gpu_cluster_keys_default_to_sync_batchnorm_on_and_deterministic_off():
    from gans.config import TrainConfig

    assert (TrainConfig().sync_batchnorm, TrainConfig().deterministic) == (True, False)
    with pytest.raises(ConfigError, match=r"^train\.deterministic='yes' must be true or false\.$"):
        GANConfig.from_dict({"train": {"deterministic": "yes"}})


def test_ema_rampup_defaults_to_stylegan2_adas_and_accepts_null_or_zero():
    from gans.config import TrainConfig

    assert TrainConfig().ema_rampup == 0.05
    assert GANConfig.from_dict({"train": {"ema_rampup": None}}).train.ema_rampup is None
    assert GANConfig.from_dict({"train": {"ema_rampup": 0}}).train.ema_rampup == 0.0
    with pytest.raises(ConfigError, match=r"^train\.ema_rampup=-0\.1 must be non-negative or null\.$"):
        GANConfig.from_dict({"train": {"ema_rampup": -0.1}})
