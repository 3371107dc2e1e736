"""The data module: sizes, stratification, disjoint splits, determinism, caching and bad input."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from ftcompare.builders import build_datamodule
from ftcompare.data import TextClassificationDataModule
from ftcompare.data.sources import load_source
from ftcompare.data.truncation import encode
from ftcompare.errors import ConfigError
from ftcompare.resolvers import embedded_model_path


def make_dm(data_files: str, **kwargs) -> TextClassificationDataModule:
    args = {
        "source": {"path": None, "data_files": data_files},
        "tokenizer": embedded_model_path(),
        "label_names": ["negative", "positive"],
        "train_size": 100,
        "val_size": 40,
        "test_size": 40,
        "max_length": 32,
        **kwargs,
    }
    return TextClassificationDataModule(**args)


def write_csv(path: Path, rows: list[tuple[str, object]], header=("text", "label")) -> str:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def texts(dm: TextClassificationDataModule, split: str) -> list[str]:
    tok = dm.tokenizer
    return [tok.decode(ids, skip_special_tokens=True) for ids in dm.splits[split]["input_ids"]]


def test_splits_have_the_configured_sizes_are_stratified_and_disjoint(reviews_csv):
    dm = make_dm(reviews_csv)
    dm.setup()
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 100, "validation": 40, "test": 40}
    for split, n in sizes.items():
        labels = dm.splits[split]["labels"]
        assert abs(sum(labels) - n / 2) <= 1, f"{split} is not stratified"
    seen = [set(texts(dm, s)) for s in ("train", "validation", "test")]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape[1] <= 32 and batch["input_ids"].shape[1] % 8 == 0  # dynamic padding
    assert set(batch) >= {"input_ids", "attention_mask", "labels"}


def test_split_is_deterministic_and_changes_with_the_seed(reviews_csv):
    first, second, other = make_dm(reviews_csv), make_dm(reviews_csv), make_dm(reviews_csv, split_seed=7)
    for dm in (first, second, other):
        dm.setup()
    assert texts(first, "train") == texts(second, "train")
    assert texts(first, "test") == texts(second, "test")
    assert set(texts(first, "test")) != set(texts(other, "test"))
    # the split fingerprints recorded in metrics.json say the same
    assert first.fingerprints == second.fingerprints and set(first.fingerprints) == {"train", "validation", "test"}
    assert all(first.fingerprints[k] != other.fingerprints[k] for k in first.fingerprints)
    assert len(set(first.fingerprints.values())) == 3
    # the second setup reuses the tokenised cache instead of re-tokenising
    assert first.splits["train"].cache_files == second.splits["train"].cache_files != []


def test_train_subsets_are_nested_with_labels_in_proportion_and_leave_val_and_test_alone(reviews_csv):
    """Learning curves: each smaller subset inside the larger ones, each label within one of its share, and the
    same validation and test examples (fingerprints) at every size."""
    whole = make_dm(reviews_csv)
    whole.setup()
    subsets = {}
    for size in (10, 25, 60, 100):
        dm = make_dm(reviews_csv, train_subset=size)
        dm.setup()
        assert {k: dm.fingerprints[k] for k in ("validation", "test")} == {
            k: whole.fingerprints[k] for k in ("validation", "test")
        }
        subsets[size] = texts(dm, "train")
        assert len(subsets[size]) == size and abs(sum(dm.splits["train"]["labels"]) - size / 2) <= 1
    assert set(subsets[10]) < set(subsets[25]) < set(subsets[60]) < set(subsets[100]) == set(texts(whole, "train"))


def test_duplicates_never_cross_splits(tmp_path):
    rows = [(f"review number {i} {'good' if i % 2 else 'bad'}", i % 2) for i in range(60)]
    rows += rows[:30]  # every one of the first 30 reviews appears twice
    dm = make_dm(write_csv(tmp_path / "dups.csv", rows), train_size=40, val_size=10, test_size=10)
    dm.setup()
    all_texts = [t for s in ("train", "validation", "test") for t in texts(dm, s)]
    assert len(all_texts) == len(set(all_texts)) == 60


def test_string_labels_are_mapped_to_label_names(tmp_path):
    rows = [(f"text {i}", "positive" if i % 2 else "negative") for i in range(40)]
    dm = make_dm(write_csv(tmp_path / "s.csv", rows), train_size=20, val_size=10, test_size=10)
    dm.setup()
    assert sorted(set(dm.splits["train"]["labels"])) == [0, 1]


@pytest.mark.parametrize(
    ("labels", "names"),
    [(["spam", "ham"], ["ham", "spam"]), ([0, 1, 2], ["0", "1", "2"])],
    ids=["strings-sorted", "indices-named-by-digits"],
)
def test_label_names_come_from_the_data_when_the_config_gives_none(tmp_path, caplog, labels, names):
    rows = [(f"text {i}", labels[i % len(labels)]) for i in range(60)]
    dm = make_dm(write_csv(tmp_path / "s.csv", rows), label_names=None, train_size=30, val_size=15, test_size=15)
    with caplog.at_level("INFO", logger="ftcompare.data.datamodule"):
        splits = dm.raw_splits()
    assert dm.label_names == names
    decoded = {t: names[y] for s in splits.values() for t, y in zip(s["text"], s["labels"], strict=True)}
    assert all(decoded[text] == str(label) for text, label in rows)  # each row keeps its own label
    assert f"{names[0]!r} -> 0" in caplog.text  # the mapping is said


def test_empty_texts_are_dropped_before_splitting(tmp_path):
    rows = [(f"text {i}", i % 2) for i in range(40)] + [("", 0), ("   ", 1)]
    dm = make_dm(write_csv(tmp_path / "e.csv", rows), train_size=30, val_size=5, test_size=5)
    dm.setup()
    assert "" not in [t.strip() for s in ("train", "validation", "test") for t in texts(dm, s)]
    assert sum(len(v) for v in dm.splits.values()) == 40


@pytest.mark.parametrize(
    ("rows", "kwargs", "message"),
    [
        ([(f"t{i}", i % 3) for i in range(30)], {}, "outside the label set"),
        ([(f"t{i}", i % 2) for i in range(30)], {"train_size": 100}, "does not fit"),
        ([(f"t{i}", i % 2) for i in range(30)], {"text_column": "review"}, "no column"),
        (
            [(f"t{i}" if i < 10 else "", i % 2) for i in range(100)],
            {},
            r"has 10 unique labelled texts after de-duplication \(90 empty or missing texts dropped\)",
        ),
    ],
    ids=["label-outside-set", "split-too-large", "missing-column", "too-few-left-after-blank-texts"],
)
def test_bad_data_gets_one_clear_error(tmp_path, rows, kwargs, message):
    dm = make_dm(write_csv(tmp_path / "bad.csv", rows), **{"train_size": 10, "val_size": 5, "test_size": 5, **kwargs})
    with pytest.raises(ConfigError, match=message):
        dm.setup()


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_each_supported_file_type_is_read_in_its_own_format(tmp_path, reviews_csv, suffix):
    """The same reviews (with commas, quotes and tabs in them) as each kind of file: the same split."""
    import pandas as pd

    frame = pd.read_csv(reviews_csv)
    frame["text"] += ', with "quotes" and\ta tab'
    frame.to_csv(tmp_path / "reference.csv", index=False)
    path = tmp_path / f"reviews{suffix}"
    if suffix in (".csv", ".tsv"):
        frame.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    elif suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    dm, reference = make_dm(str(path)), make_dm(str(tmp_path / "reference.csv"))
    dm.setup()
    reference.setup()
    for split in ("train", "validation", "test"):
        assert dm.splits[split]["labels"] == reference.splits[split]["labels"]
        assert dm.splits[split]["input_ids"] == reference.splits[split]["input_ids"]


def test_a_glob_reads_every_file_it_matches(tmp_path, reviews_csv):
    import pandas as pd

    rows = pd.read_csv(reviews_csv)
    rows.iloc[::2].to_csv(tmp_path / "part1.csv", index=False)
    rows.iloc[1::2].to_csv(tmp_path / "part2.csv", index=False)
    loaded = load_source({"path": None, "data_files": str(tmp_path / "part*.csv")})["train"]
    assert sorted(loaded["text"]) == sorted(rows["text"])


def test_missing_data_file_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"data.source.data_files=.*does not exist"):
        make_dm(str(tmp_path / "nope.csv")).setup()


def test_tfidf_baseline_runs_on_the_same_split_and_window(compose_cfg, reviews_csv):
    from ftcompare.baselines import run, tfidf_accuracy

    cfg = compose_cfg(
        "data=files",
        f"data.source.data_files={reviews_csv}",
        "data.max_length=16",
        "data.train_size=200",
        "data.val_size=50",
        "data.test_size=50",
    )
    result = run(cfg)
    assert set(result["tfidf_whole_text"]) == set(result["tfidf_head_tail_16_tokens"]) == {"validation", "test"}
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    assert result["split_fingerprints"] == datamodule.fingerprints  # fitted and scored on the run's very splits
    splits = {name: (ds["text"], ds["labels"]) for name, ds in datamodule.raw_splits().items()}
    assert result["tfidf_whole_text"] == tfidf_accuracy(splits)
    # learned from the labels (0.82 / 0.86 here; chance with the train labels shuffled), and 16 tokens of a review
    # tell less than the whole of it (0.64 / 0.58): the window is the model's, not the whole text again
    assert min(result["tfidf_whole_text"].values()) >= 0.75
    window = result["tfidf_head_tail_16_tokens"]
    assert all(window[split] < result["tfidf_whole_text"][split] - 0.1 for split in window)
    assert result["test_share_longer_than_16_tokens"] == 1.0  # every review is longer than 16 tokens


def test_length_grouped_batches_cover_every_example_once_with_less_padding(reviews_csv):
    import torch

    padding = {}
    for grouped in (False, True):
        dm = make_dm(reviews_csv, max_length=256, batch_size=8, group_by_length=grouped)
        dm.setup("fit")
        torch.manual_seed(0)
        batches = list(dm.train_dataloader())
        ids = sorted(
            tuple(row[mask.bool()].tolist())
            for b in batches
            for row, mask in zip(b["input_ids"], b["attention_mask"], strict=True)
        )
        assert ids == sorted(tuple(x) for x in dm.splits["train"]["input_ids"])
        masks = [b["attention_mask"] for b in batches]
        padding[grouped] = 1 - sum(float(m.sum()) for m in masks) / sum(m.numel() for m in masks)
    assert padding[True] < 0.75 * padding[False], padding
    widths = [m.shape[1] for m in masks]
    assert widths[0] == widths[1] == max(widths) > min(widths)  # the tracked (second) step: a full-length batch


@pytest.mark.parametrize("split", ["validation", "test"])
def test_grouped_evaluation_runs_longest_first_over_the_same_examples(reviews_csv, split):
    """Metrics do not depend on order: the same examples, each once, in batches padded less."""
    examples, padded, longest = {}, {}, []
    for grouped in (False, True):
        dm = make_dm(reviews_csv, max_length=256, batch_size=4, group_by_length=grouped)
        dm.setup("fit")
        batches = list(dm.val_dataloader() if split == "validation" else dm.test_dataloader())
        examples[grouped] = sorted(
            (tuple(row[mask.bool()].tolist()), label)
            for b in batches
            for row, mask, label in zip(b["input_ids"], b["attention_mask"], b["labels"].tolist(), strict=True)
        )
        padded[grouped] = sum(b["attention_mask"].numel() for b in batches)
        longest = [int(b["attention_mask"].sum(1).max()) for b in batches]
    assert longest == sorted(longest, reverse=True)
    assert examples[True] == examples[False] and padded[True] < padded[False]


@pytest.mark.parametrize("truncation", ["head", "tail", "head_tail"])
def test_truncation_keeps_the_chosen_ends_of_a_long_review(reviews_csv, truncation):
    """The special tokens stay; head keeps the first tokens, tail the last, head_tail the first and last half."""
    dm = make_dm(reviews_csv, truncation=truncation)
    dm.setup()
    raw = list(dm.raw_splits()["train"]["text"])
    whole = dm.tokenizer(raw, add_special_tokens=False, verbose=False)["input_ids"]
    long = [i for i, ids in enumerate(whole) if len(ids) > 40]
    assert long, "the fixture needs reviews longer than max_length"
    cls, sep = dm.tokenizer.cls_token_id, dm.tokenizer.sep_token_id
    budget = 32 - 2
    head = {"head": budget, "tail": 0, "head_tail": budget // 2}[truncation]
    for i in long:
        ids = dm.splits["train"][i]["input_ids"]
        assert len(ids) == 32 and ids[0] == cls and ids[-1] == sep
        assert ids[1:-1] == whole[i][:head] + whole[i][len(whole[i]) - (budget - head) :]
        assert dm.splits["train"][i]["attention_mask"] == [1] * 32
    short = encode(dm.tokenizer, ["A fine film."], 32, truncation)["input_ids"][0]
    assert short == dm.tokenizer("A fine film.")["input_ids"]  # a text that fits is kept whole


def test_truncation_is_refused_unless_known(reviews_csv):
    with pytest.raises(ConfigError, match=r"data\.truncation='middle'"):
        make_dm(reviews_csv, truncation="middle")
