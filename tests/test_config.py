import pytest

from gans.config import ConfigError, GANConfig, OptimConfig
from gans.registry import Registry, RegistryError
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
        ({"data": {"resolution": 48}}, r"data\.resolution=48 is not supported by model 'dcgan'; allowed values: 32, 64, 128"),
        ({"train": {"steps": "many"}}, r"train\.steps='many' must be an integer"),
        ({"loss": {"label_smoothing": 0.7}}, r"loss\.label_smoothing=0\.7 must be in \[0, 0\.5\)"),
    ],
)
def test_bad_values_fail_at_load_with_key_and_allowed_values(params, message):
    with pytest.raises(ConfigError, match=message):
        GANConfig.from_dict(params)


def test_mlp_accepts_any_resolution():
    assert GANConfig.from_dict({"model": {"name": "mlp"}, "data": {"resolution": 20}}).image_shape == (1, 20, 20)


def test_params_reject_unknown_sections_and_keys():
    with pytest.raises(ConfigError, match=r"Unknown params section 'optimiser'"):
        parse_params({"optimiser": {}})
    with pytest.raises(ConfigError, match=r"Unknown key ray\.workers; allowed keys: address, num_workers"):
        parse_params({"ray": {"workers": 2}})
    with pytest.raises(ConfigError, match=r"ray\.placement_strategy='ANY'"):
        parse_params({"ray": {"placement_strategy": "ANY"}})


def test_committed_params_yaml_loads():
    from pipeline.params import load_params

    params = load_params()
    assert params.gan.model.name in ("mlp", "dcgan")
    assert params.paths.eval_metrics.endswith(".json")


def test_registry_typo_lists_valid_names():
    registry = Registry("widget")
    registry.register("alpha")(object())
    registry.register("beta")(object())
    with pytest.raises(RegistryError, match=r"Unknown widget 'alpah'; valid names are: alpha, beta\."):
        registry.get("alpah")
    with pytest.raises(RegistryError, match="already registered"):
        registry.register("alpha")(object())
