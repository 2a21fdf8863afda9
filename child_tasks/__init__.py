"""Child tasks: data, the NOS ConvNet, Wide ResNet and a small NMT model, trained with any rule to give
a candidate's reward. Imports only `dsl` of this project; no Ray here, plain functions that the search
calls on its workers.

    from child_tasks import train, compare, load_task_config

    result = train("exp(sign(g) * sign(m)) * g", "digits", seed=0)   # PowerSign on the embedded task
    result.reward, result.lr, result.to_dict()
    compare(["sgd", "adam", "powersign"], "digits", seeds=[0, 1, 2]).print()

Modules: `image_data` (image data in memory), `datasets` (digits, augmentation, the image tasks),
`mnist1d`, `cifar10`, `translation` (parallel text, the synthetic pair, BLEU), `models` (ConvNet,
WideResNet, TranslationTransformer, ConvNet1D, MLP), `config` (task configs in configs/*.yaml),
`problems` (a task's loss and metric), `train` (NOS's lr choice and the guards), `batched` (K
candidates trained at once in one batched program, as `train` would each), `reward`
(seed-averaged, normalised scores; references), `suite` (several tasks averaged), `compare` (tables
over seeds).
"""

from child_tasks.batched import train_batch
from child_tasks.compare import ComparisonRow, ComparisonTable, compare, paired
from child_tasks.config import ConfigError, TaskConfig, available_configs, load_task_config, override
from child_tasks.datasets import augment_batch, load_digits, load_image_task
from child_tasks.image_data import ImageData
from child_tasks.models import MLP, ConvNet, ConvNet1D, TranslationTransformer, WideResNet, count_parameters
from child_tasks.reward import Evaluation, TaskScore, evaluate, evaluate_batch, with_reference
from child_tasks.suite import Suite, load_suite
from child_tasks.train import BASELINES, LrTrial, OptimizerSpec, TrainResult, resolve_optimizer, train
from child_tasks.translation import TranslationData, Vocab, bleu, synthetic_translation

__all__ = [
    "BASELINES", "MLP", "ComparisonRow", "ComparisonTable", "ConfigError", "ConvNet", "ConvNet1D",
    "Evaluation", "ImageData", "LrTrial", "OptimizerSpec", "Suite", "TaskConfig", "TaskScore", "TrainResult",
    "TranslationData", "TranslationTransformer", "Vocab", "WideResNet", "augment_batch", "available_configs",
    "bleu", "compare", "count_parameters", "evaluate", "evaluate_batch", "load_digits", "load_image_task",
    "load_suite", "load_task_config", "override", "paired", "resolve_optimizer", "synthetic_translation",
    "train", "train_batch", "with_reference",
]
