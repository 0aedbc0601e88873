"""The Examples in the public API's docstrings run and print what they say.

The API reference (docs/api.md) shows these examples; running them here keeps
them true. They use scikit-learn's bundled digits, so no data files are needed.
"""

import doctest
import importlib

import pytest

PUBLIC_API = [
    ("sda.dA", "dA"),
    ("sda.SdA", "SdA"),
    ("sda.mlp", "HiddenLayer"),
    ("sda.logistic", "LogisticRegression"),
    ("sda.data", "load_dataset"),
    ("sda.train", "pretrain"),
    ("sda.finetune", "finetune"),
    ("sda.finetune", "classifier_line_search"),
    ("sda.finetune", "compile_rows_step"),
    ("sda.trained", "load_run"),
    ("sda.trained", "model_metadata"),
]


@pytest.mark.parametrize("module_name, name", PUBLIC_API)
def test_docstring_examples_run(module_name, name):
    module = importlib.import_module(module_name)
    obj = getattr(module, name)
    tests = doctest.DocTestFinder(recurse=False).find(obj, name, globs=dict(vars(module)))
    examples = sum(len(test.examples) for test in tests)
    assert examples > 0, f"{module_name}.{name} has no Examples section"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in tests:
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} failing example(s) in {module_name}.{name}"
