"""InferenceOptions: validated once where they are built, each error naming the field, in the caller's words."""

import dataclasses

import pytest
import torch

from egnet_core.config import TrainConfig
from egnet_core.deploy.options import InferenceOptions, OptionError
from egnet_core.engine.train import validation_options


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"input_size": (16, 64)}, "input_size", r"input_size must be \(width, height\), each at least 32, got"),
        ({"confidence_threshold": 1.5}, "confidence_threshold", r"confidence_threshold must lie in \[0, 1\], got 1.5"),
        ({"threads": -2}, "threads", "threads must be 0 \\(torch's choice\\) or positive, got -2"),
        ({"device": "tpu"}, "device", "device: device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        ({"compile": "yes"}, "compile", "compile must be True or False, got 'yes'"),
        ({"architecture": {"depth": 3}}, "architecture", "names no model field depth"),
    ],
)
def test_a_bad_option_is_an_option_error_naming_the_field_and_the_value(options, field, message):
    with pytest.raises(OptionError, match=message) as raised:
        InferenceOptions(**options)
    assert raised.value.field == field
    assert raised.value.value == next(iter(options.values()))


def test_errors_use_the_callers_name_of_the_option():
    with pytest.raises(OptionError, match="parameter 'threads' must be 0") as raised:
        InferenceOptions(threads=-1, names={"threads": "parameter 'threads'"})
    assert raised.value.field == "threads"


def test_the_options_keep_the_device_resolved_and_the_sizes_as_tuples():
    options = InferenceOptions(device="cpu", input_size=[64, 48], scales=[1, 1.5])
    assert options.device == torch.device("cpu")
    assert options.input_size == (64, 48) and options.scales == (1.0, 1.5)
    assert dataclasses.replace(options, flip=True).device == torch.device("cpu")


def test_training_validates_through_the_same_options():
    config = TrainConfig()
    options = validation_options(config, torch.device("cpu"))
    assert options.input_size == config.data.eval_size
    assert options.device == torch.device("cpu")
