"""The tests' zoo: the tiny models and data of every task, the options that keep a run on them
short, and the helpers the test modules share. One place: a test module imports from here,
never from another test module.

Everything is built from configs in milliseconds, with a real (tiny) tokenizer; no hub, no
download. `ZOO` holds, for every registered task, a tiny teacher directory, a small DatasetDict
and how a cheap run treats them (tests/test_task_conformance.py takes each through the stages).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pocketsize.data.toy_sentiment import NEGATIVE, NEUTRAL, POSITIVE, SPECIALS, WORDS

# ---------------------------------------------------------------------- quick options

# Training options that keep a Trainer run on a tiny model short: no progress bar, small
# batches, no loss logged, no validation pass after each epoch.
QUICK = dict(progress=False, batch_size=16, logging_steps=1000, evaluate=False)
# Variants, each for tests that need a value QUICK does not have:
# - the validation split scored after every epoch, for tests that read stage.json's
#   "validation" (tests/test_finetune.py)
QUICK_VALIDATED = {**QUICK, "evaluate": True}
# - every training loss logged, for the loss curves that assert_decreased reads (the encoder
#   and BiLSTM chains)
QUICK_LOGGED = {**QUICK, "logging_steps": 1}
# - the GPT-2, Llama-layout and T5 chains: a loss every 2 steps (assert_decreased compares
#   the first and last three logged, so the logging interval is part of what they check) and
#   validated after every epoch, the settings their bounds were set with; each also passes
#   its model's max_length (LM_MAX_LENGTH, T5_MAX_LENGTH)
QUICK_GENERATIVE = {**QUICK_VALIDATED, "logging_steps": 2}
# - the digits chain (1,797 images): batches of 64, the size its step counts and accuracy
#   bounds were set with; a loss every 5 steps, validated after every epoch
QUICK_DIGITS = {**QUICK_VALIDATED, "batch_size": 64, "logging_steps": 5}
# Evaluation without the slow parts (latency timing and the peak-memory child processes).
EVAL_QUICK = dict(latency=False, memory=False, progress=False, bootstrap_samples=50)

# Training lengths that fit the tiny generative models and their data: lm_data's sentences
# under GPT-2's 64 positions; make_qa_dataset's "question: ... context: ..." prompts for T5.
LM_MAX_LENGTH = 32
T5_MAX_LENGTH = 48

# ---------------------------------------------------------------------- tokenizers

SUBWORDS = ["##s", "##ly", "##ing", "##ed", "##er"]


def make_tokenizer(path, extra: tuple = ()):
    """A real BertTokenizerFast over a tiny vocabulary (plus `extra` pieces), saved to `path`."""
    from transformers import BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    # one entry per piece: a duplicate would leave a hole in the ids
    vocab = (
        SPECIALS + WORDS + SUBWORDS + [c for c in "abcdefghijklmnopqrstuvwxyz" if c not in WORDS]
    ) + list(extra)
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(path)
    return tok


def make_word_tokenizer(path=None, words=None, append_eos=False):
    """A real word-level tokenizer (tokenizers library) wrapped for transformers; no hub.

    append_eos: end every encoded text with <eos>, as T5's tokenizer does.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = ["<pad>", "<unk>", "<eos>"] + (words or POSITIVE + NEGATIVE + NEUTRAL)
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    if append_eos:
        core.post_processor = processors.TemplateProcessing(
            single="$A <eos>", special_tokens=[("<eos>", 2)]
        )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<eos>",
        bos_token="<eos>",
        model_input_names=["input_ids", "attention_mask"],
    )
    if path is not None:
        tok.save_pretrained(path)
    return tok


# ---------------------------------------------------------------------- encoders

NER_LABELS = ["O", "B-MISC", "I-MISC", "B-PER", "I-PER"]  # make_ner_dataset's tags


def tiny_bert_config(vocab_size: int, **overrides):
    from transformers import BertConfig

    kw = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=2,
    )
    kw.update(overrides)
    return BertConfig(**kw)


def make_tiny_bert(path, task: str = "text-classification", seed: int = 0, **overrides):
    """Save a tiny random BERT (classification: 2 labels; QA: span head; token
    classification: make_ner_dataset's tags) with its tokenizer."""
    import torch
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    tok = make_tokenizer(path)
    config = tiny_bert_config(len(tok), **overrides)
    torch.manual_seed(seed)
    if task == "extractive-qa":
        model = AutoModelForQuestionAnswering.from_config(config)
    elif task == "token-classification":
        config.id2label = dict(enumerate(NER_LABELS))
        config.label2id = {n: i for i, n in config.id2label.items()}
        model = AutoModelForTokenClassification.from_config(config)
    else:
        num_labels = overrides.get("num_labels", 2)
        names = (
            ["negative", "positive"]
            if num_labels == 2
            else [f"class{i}" for i in range(num_labels)]
        )
        config.id2label = dict(enumerate(names))
        config.label2id = {n: i for i, n in config.id2label.items()}
        model = AutoModelForSequenceClassification.from_config(config)
    model.eval()
    model.save_pretrained(path)
    return path


def make_tiny_embedder(path, seed: int = 0, pooling: str = "mean", arch="bert", **overrides):
    """A tiny random encoder (BERT, or `arch` as tiny_config makes it) saved as a
    sentence-transformers directory (modules.json, 1_Pooling with `pooling`, Normalize), as
    all-MiniLM-L6-v2 (BERT) and all-mpnet-base-v2 (MPNet) ship."""
    import torch
    from transformers import AutoModel

    from pocketsize.formats.sentence_dir import Pooling, write_sentence_files

    tok = make_tokenizer(path, extra=("##a",))  # model2vec splits a long word into pieces
    if arch == "bert":
        config = tiny_bert_config(len(tok), **overrides)
    else:  # (make_tokenizer's [PAD] is id 0)
        config = tiny_config(arch, len(tok), **{"pad_token_id": 0, **overrides})
    torch.manual_seed(seed)
    model = AutoModel.from_config(config).eval()
    model.save_pretrained(path)
    write_sentence_files(path, Pooling(pooling, True), config.hidden_size, 64)
    return path


def tiny_config(arch: str, vocab_size: int, **overrides):
    """A two-layer config of `arch`, hidden 32, 4 heads, MLP 37 (odd, so halving it rounds)."""
    from transformers import AutoConfig

    common = dict(vocab_size=vocab_size, max_position_embeddings=80)
    sizes = {
        "xlnet": dict(d_model=32, n_layer=2, n_head=4, d_inner=37),
        "distilbert": dict(dim=32, n_layers=2, n_heads=4, hidden_dim=37),
    }.get(arch, dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=37))  # fmt: skip
    extra = {
        "xlnet": {"max_position_embeddings": None},
        # the special ids of make_tokenizer's vocabulary ([PAD] 0, [CLS] 2, [SEP] 3); a local
        # window shorter than the texts, so local and global layers differ; no torch.compile
        "modernbert": dict(
            pad_token_id=0, cls_token_id=2, sep_token_id=3, bos_token_id=2, eos_token_id=3,
            global_attn_every_n_layers=2, local_attention=4, reference_compile=False,
        ),
        # DeBERTa-v3's attention: relative positions in buckets, keys shared with content
        "deberta-v2": dict(
            relative_attention=True, position_buckets=8, pos_att_type=["p2c", "c2p"],
            share_att_key=True, norm_rel_ebd="layer_norm", type_vocab_size=0, pad_token_id=0,
        ),
        # MPNet numbers positions after its padding id (make_tokenizer's [PAD] is 0)
        "mpnet": dict(pad_token_id=0),
    }.get(arch, {})  # fmt: skip
    kw = {**common, **sizes, **extra, **overrides}
    kw = {k: v for k, v in kw.items() if v is not None}
    return AutoConfig.for_model(arch, **kw)


def make_base(path, arch: str):
    """A tiny random base encoder (no task head) with a real WordPiece tokenizer."""
    import torch
    from transformers import AutoModel

    tok = make_tokenizer(path)
    if arch == "xlnet":
        # XLNet summarises the last token: pad on the left, as XLNet's own tokenizer does
        tok.padding_side = "left"
        tok.save_pretrained(path)
    torch.manual_seed(0)
    AutoModel.from_config(tiny_config(arch, len(tok))).save_pretrained(path)
    return path


def make_tiny_encoder(path, arch, seed=0, **overrides):
    """A tiny random `arch` classifier whose weights are large enough that one masked head or
    neuron moves the logits; returns (model, tokenizer)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    tokenizer = make_tokenizer(path)
    config = tiny_config(arch, len(tokenizer), initializer_range=0.3, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_config(config).eval()
    model.save_pretrained(path)
    return model, tokenizer


def make_tiny_distilbert(path, seed=0, **overrides):
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    tokenizer = make_tokenizer(path)
    # weights large enough that one masked head moves the logits
    config = DistilBertConfig(
        vocab_size=len(tokenizer), dim=32, n_layers=2, n_heads=4, hidden_dim=37,
        max_position_embeddings=80, pad_token_id=0, initializer_range=0.3, **overrides,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = DistilBertForSequenceClassification(config).eval()
    model.save_pretrained(path)
    return model, tokenizer


# ---------------------------------------------------------------------- decoders, T5

HEAD_DIM = 8


def make_tiny_gpt2(path, n_layer=2, seed=0, words=None):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = make_word_tokenizer(path, words)
    config = GPT2Config(
        vocab_size=len(tok), n_embd=32, n_layer=n_layer, n_head=4, n_positions=64,
        bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    GPT2LMHeadModel(config).save_pretrained(path)
    return path


def decoder_config(model_type, vocab_size, tokenizer, **overrides):
    """A four-layer Llama-layout config (Llama, Mistral, Qwen2, Qwen3, SmolLM3) with grouped
    query attention (4 heads, 2 key/value heads)."""
    from transformers import AutoConfig

    extra = {
        # alternating full and sliding-window layers (window shorter than the test texts), so
        # a layer_types list that did not follow the kept layers changes the logits
        "qwen2": dict(use_sliding_window=True, sliding_window=4, max_window_layers=0,
                      layer_types=["full_attention", "sliding_attention"] * 2),
        "mistral": dict(sliding_window=None),
        # rotary positions in every other layer only
        "smollm3": dict(no_rope_layers=[1, 0, 1, 0]),
    }.get(model_type, {})  # fmt: skip
    kw = dict(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=37, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=HEAD_DIM,
        max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )  # fmt: skip
    kw.update(extra)
    kw.update(overrides)
    return AutoConfig.for_model(model_type, **kw)


def make_tiny_decoder(path, model_type="llama", seed=0, **overrides):
    """A tiny random Llama-layout decoder with a word-level tokenizer; (model, tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = make_word_tokenizer(path)
    config = decoder_config(model_type, len(tokenizer), tokenizer, **overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # random biases too (Qwen2 has q/k/v biases), so slicing them shows
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    model.save_pretrained(path)
    return model, tokenizer


T5_WORDS = POSITIVE + NEGATIVE + NEUTRAL + ["question", "context", ":", "which", "word"]


def make_tiny_t5(path, layers=2, seed=0):
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tok = make_word_tokenizer(path, T5_WORDS, append_eos=True)
    config = T5Config(
        vocab_size=len(tok), d_model=32, d_kv=8, d_ff=48, num_heads=4,
        num_layers=layers, num_decoder_layers=layers,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        decoder_start_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(seed)
    T5ForConditionalGeneration(config).save_pretrained(path)
    return path


# ---------------------------------------------------------------------- data


def make_sentences(n: int, seed: int = 0):
    """Short sentences whose label (1 positive, 0 negative) follows the sentiment words."""
    rng = random.Random(seed)
    texts, labels = [], []
    for _ in range(n):
        label = rng.random() < 0.5
        words = rng.sample(NEUTRAL, rng.randint(2, 8))
        words += rng.sample(POSITIVE if label else NEGATIVE, rng.randint(1, 2))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(int(label))
    return texts, labels


def make_cls_dataset(n_train=64, n_val=24, n_test=32, seed=0):
    """A DatasetDict with train/validation/test, columns text and label (ClassLabel)."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features(
        {"text": Value("string"), "label": ClassLabel(names=["negative", "positive"])}
    )
    splits = {}
    for i, (name, n) in enumerate([("train", n_train), ("validation", n_val), ("test", n_test)]):
        texts, labels = make_sentences(n, seed=seed * 10 + i)
        splits[name] = Dataset.from_dict({"text": texts, "label": labels}, features=features)
    return DatasetDict(splits)


def write_cls_files(directory, **sizes):
    """make_cls_dataset as train/validation/test .jsonl files (labels by name) in `directory`,
    the layout a user's local data directory has; returns the directory."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    for split, ds in make_cls_dataset(**sizes).items():
        rows = [
            json.dumps({"text": t, "label": ["negative", "positive"][y]})
            for t, y in zip(ds["text"], ds["label"])
        ]
        (directory / f"{split}.jsonl").write_text("\n".join(rows) + "\n")
    return directory


def make_qa_dataset(
    n_train=48, n_val=12, n_test=12, seed=0, unanswerable_every: int = 0, long: bool = False
):
    """SQuAD-layout data: the answer is the one positive word in a short context (ten neutral
    and negative words around it), the question "which word is good".

    unanswerable_every: every k-th example of each split (the first included) has no answer,
    as in SQuAD v2. long: 40-word contexts, which a short max_length cuts into several windows.
    """
    from datasets import Dataset, DatasetDict

    splits = {}
    for k, (name, n) in enumerate([("train", n_train), ("validation", n_val), ("test", n_test)]):
        rng = random.Random(seed * 10 + k)
        rows = {"id": [], "title": [], "context": [], "question": [], "answers": []}
        for i in range(n):
            neutral = rng.choices(NEUTRAL, k=37) if long else rng.sample(NEUTRAL, 8)
            words = neutral + rng.sample(NEGATIVE, 2)
            answer = rng.choice(POSITIVE)
            words.insert(rng.randint(0, len(words)), answer)
            context = " ".join(words)
            start = context.index(f" {answer}") + 1 if not context.startswith(answer) else 0
            answers = {"text": [answer], "answer_start": [start]}
            if unanswerable_every and i % unanswerable_every == 0:
                answers = {"text": [], "answer_start": []}
            rows["id"].append(f"{name}-{i}")
            rows["title"].append("t")
            rows["context"].append(context)
            rows["question"].append("which word is good")
            rows["answers"].append(answers)
        splits[name] = Dataset.from_dict(rows)
    return DatasetDict(splits)


def make_ner_dataset(n_train=120, n_val=30, n_test=30, seed=0):
    """Tweets-sized toy sentences: "director cast" is a PER, "music" a MISC, the rest O."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Sequence, Value

    names = NER_LABELS
    rng = random.Random(seed)
    features = Features(
        {
            "id": Value("string"),
            "tokens": Sequence(Value("string")),
            "ner_tags": Sequence(ClassLabel(names=names)),
        }
    )

    def split(n):
        rows = {"id": [], "tokens": [], "ner_tags": []}
        for i in range(n):
            words, tags = [], []
            for _ in range(rng.randint(3, 9)):
                r = rng.random()
                if r < 0.15:
                    words += ["director", "cast"]
                    tags += ["B-PER", "I-PER"]
                elif r < 0.25:
                    words.append("music")
                    tags.append("B-MISC")
                else:
                    words.append(rng.choice(NEUTRAL[:10] + ["films", "directed"]))
                    tags.append("O")
            rows["id"].append(str(i))
            rows["tokens"].append(words)
            rows["ner_tags"].append([names.index(t) for t in tags])
        return Dataset.from_dict(rows, features=features)

    return DatasetDict(train=split(n_train), validation=split(n_val), test=split(n_test))


def templated_sentences(n: int, seed: int) -> list[str]:
    """Sentences with a learnable structure: fixed function words, one sentiment per sentence."""
    rng = random.Random(seed)
    nouns = ["film", "movie", "story", "plot", "cast", "script", "ending", "music"]
    out = []
    for _ in range(n):
        adjectives = POSITIVE if rng.random() < 0.5 else NEGATIVE
        a, b = rng.sample(nouns, 2)
        out.append(f"the {a} was {rng.choice(adjectives)} and the {b} was {rng.choice(adjectives)}")
    return out


def lm_data(n_train=128, n_val=16, n_test=24):
    """A causal-LM DatasetDict (one text column) of templated_sentences."""
    from datasets import Dataset, DatasetDict

    sizes = [("train", n_train), ("validation", n_val), ("test", n_test)]
    return DatasetDict(
        {
            name: Dataset.from_dict({"text": templated_sentences(n, seed=k)})
            for k, (name, n) in enumerate(sizes)
        }
    )


def digits_dataset(n_train=None, n_val=None, n_test=None):
    """scikit-learn's bundled 8x8 digits (pocketsize.data.digits: 1,797 images), each split cut
    to its first n rows where n is given."""
    from pocketsize.data.digits import load_digits_dataset

    data = load_digits_dataset()
    for name, n in (("train", n_train), ("validation", n_val), ("test", n_test)):
        if n is not None:
            data[name] = data[name].select(range(n))
    return data


SQUAD_CONTEXT = "The Eiffel Tower was finished in 1889. It is 330 metres tall and stands in Paris."


def squad_json(version: str, with_impossible: bool = False, start: int | None = None) -> dict:
    """A SQuAD file's JSON (two questions; a third unanswerable one with with_impossible);
    start: a wrong answer_start for the first answer."""
    context = SQUAD_CONTEXT
    qas = [
        {"id": "q1", "question": "When was it finished?", "answers": [{"text": "1889", "answer_start": context.index("1889") if start is None else start}]},
        {"id": "q2", "question": "Where does it stand?", "answers": [{"text": "Paris", "answer_start": context.index("Paris")}, {"text": "Paris", "answer_start": context.index("Paris")}]},
    ]  # fmt: skip
    if with_impossible:
        qas.append({"id": "q3", "question": "Who painted it?", "answers": [], "is_impossible": True,
                    "plausible_answers": [{"text": "Eiffel", "answer_start": 4}]})  # fmt: skip
    return {
        "version": version,
        "data": [{"title": "Eiffel_Tower", "paragraphs": [{"context": context, "qas": qas}]}],
    }


def tiny_recipe(teacher, data_dir, **changes) -> dict:
    """A recipe that runs every stage of the tiny text-classification chain in seconds."""
    recipe = {
        "name": "tiny",
        "data": str(data_dir),
        "seed": 1,
        "teacher": {"model": str(teacher), "finetune": {"max_steps": 3, "batch_size": 16}},
        "student": {"init": "truncate", "layers": [0]},
        "distill": {"max_steps": 3, "batch_size": 16},
        "prune": {"heads": 0.5, "ffn": 0.5, "vocab": True, "min_examples": 16},
        "export": {"optimize": True},
        "quantize": {"method": "dynamic", "mobile": True},
        "eval": {
            "batch_sizes": [1],
            "latency_examples": 8,
            "repeats": 1,
            "memory": False,
            "baselines": ["optimum-int8"],
        },
    }
    recipe.update(changes)
    return recipe


# ---------------------------------------------------------------------- one tiny teacher per task


@dataclass
class Tiny:
    """One task's tiny teacher (a model directory with its tokenizer, or a module directory),
    its small data, and how a cheap run treats them."""

    task: str
    teacher: Path
    data: Any  # a DatasetDict with train / validation / test
    student: Any = "truncate:0"  # what distill builds the student from
    train_options: dict = field(default_factory=dict)  # beyond QUICK: the model's max_length
    export_options: dict = field(default_factory=dict)  # a module directory's example inputs


def _text_classification(root: Path) -> Tiny:
    teacher = make_tiny_bert(root / "teacher")
    return Tiny("text-classification", teacher, make_cls_dataset(16, 4, 8))


def _token_classification(root: Path) -> Tiny:
    teacher = make_tiny_bert(root / "teacher", task="token-classification")
    return Tiny("token-classification", teacher, make_ner_dataset(16, 4, 8))


def _extractive_qa(root: Path) -> Tiny:
    teacher = make_tiny_bert(root / "teacher", task="extractive-qa")
    return Tiny("extractive-qa", teacher, make_qa_dataset(16, 4, 8))


def _causal_lm(root: Path) -> Tiny:
    teacher = make_tiny_gpt2(root / "teacher")
    options = {"max_length": LM_MAX_LENGTH}
    return Tiny("causal-lm", teacher, lm_data(16, 4, 8), train_options=options)


def _seq2seq(root: Path) -> Tiny:
    teacher = make_tiny_t5(root / "teacher")
    options = {"max_length": T5_MAX_LENGTH}
    return Tiny("seq2seq", teacher, make_qa_dataset(16, 4, 8), train_options=options)


def _sentence_embedding(root: Path) -> Tiny:
    teacher = make_tiny_embedder(root / "teacher")
    return Tiny("sentence-embedding", teacher, make_cls_dataset(16, 4, 8))


def _array_classification(root: Path) -> Tiny:
    """The digits CNN as a module directory (no tokenizer), distilled into the digits MLP; a
    module directory exports from example inputs."""
    import torch

    from pocketsize.formats.module_dir import save_module_dir
    from pocketsize.zoo.digits import DigitsCNN, DigitsMLP

    data = digits_dataset(n_train=32, n_val=16, n_test=16)
    labels = [str(i) for i in range(10)]
    torch.manual_seed(0)
    cnn = DigitsCNN(channels=4, hidden=8)
    teacher = save_module_dir(cnn, root / "teacher", labels=labels, task="array-classification")
    torch.manual_seed(1)
    student = DigitsMLP(hidden=8)
    example = {"pixel_values": torch.tensor(data["test"][:4]["pixel_values"])}
    return Tiny(
        "array-classification", teacher, data, student, export_options={"example_inputs": example}
    )


# task name -> builder(root directory) of its Tiny
ZOO: dict[str, Callable[[Path], Tiny]] = {
    "text-classification": _text_classification,
    "token-classification": _token_classification,
    "extractive-qa": _extractive_qa,
    "causal-lm": _causal_lm,
    "seq2seq": _seq2seq,
    "array-classification": _array_classification,
    "sentence-embedding": _sentence_embedding,
}


# ---------------------------------------------------------------------- shared checks


def loss_recorder():
    """A TrainerCallback that keeps every logged training loss, and the list it fills."""
    from transformers import TrainerCallback

    losses: list[float] = []

    class Record(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    return Record(), losses


def assert_decreased(losses: list[float], k: int = 3) -> None:
    """The mean of the last k logged losses is below the mean of the first k."""
    assert len(losses) >= 2 * k, losses
    first, last = np.mean(losses[:k]), np.mean(losses[-k:])
    assert last < first, f"loss did not decrease: first {first:.4f}, last {last:.4f} ({losses})"


def assert_one_error_line(capsys, pattern):
    """What the CLI wrote to stderr is one line, `pocketsize: error: ...`, matching pattern."""
    import re

    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("pocketsize: error: "), err
    assert re.search(pattern, err[0]), err[0]


def make_tiny_gguf(path, seed: int = 0, matmul_type: str = "Q8_0"):
    """A tiny random Llama as a GGUF file, as llama.cpp writes one: byte-level BPE vocabulary
    (the 256 byte symbols, a few merges, <s> and </s>), weights as llama.cpp names them, the
    layers' 2-D ones `matmul_type` and the token table Q4_1, norms F32. Returns the path."""
    import gguf
    import numpy as np
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    rng = np.random.default_rng(seed)
    hidden, ffn, layers, heads, kv_heads = 32, 64, 2, 4, 2
    merges = ["Ġ t", "h e", "Ġt he", "i n", "Ġ a"]
    tokens = list(bytes_to_unicode().values()) + [m.replace(" ", "") for m in merges]
    tokens += ["<s>", "</s>"]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([1] * (len(tokens) - 2) + [3, 3])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(len(tokens) - 2)
    writer.add_eos_token_id(len(tokens) - 1)

    def add(name, shape, qtype=gguf.GGMLQuantizationType[matmul_type]):
        data = rng.normal(0, 0.05, size=shape).astype(np.float32)
        if len(shape) == 2:
            writer.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, data if len(shape) == 2 else np.abs(data) + 1)

    add("token_embd.weight", (len(tokens), hidden), gguf.GGMLQuantizationType.Q4_1)
    for i in range(layers):
        add(f"blk.{i}.attn_norm.weight", (hidden,))
        add(f"blk.{i}.attn_q.weight", (hidden, hidden))
        add(f"blk.{i}.attn_k.weight", (hidden * kv_heads // heads, hidden))
        add(f"blk.{i}.attn_v.weight", (hidden * kv_heads // heads, hidden))
        add(f"blk.{i}.attn_output.weight", (hidden, hidden))
        add(f"blk.{i}.ffn_norm.weight", (hidden,))
        add(f"blk.{i}.ffn_gate.weight", (ffn, hidden))
        add(f"blk.{i}.ffn_up.weight", (ffn, hidden))
        add(f"blk.{i}.ffn_down.weight", (hidden, ffn))
    add("output_norm.weight", (hidden,))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
