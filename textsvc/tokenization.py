"""Train or load Hugging Face `tokenizers` tokenizers, wrapped as `PreTrainedTokenizerFast`."""

from __future__ import annotations

import json
from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

PAD, UNK, CLS, SEP, MASK = "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"
PIECE_PREFIX = "##"  # WordPiece's mark of a piece that continues a word


def train_wordpiece_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int,
                              with_cls_sep: bool) -> PreTrainedTokenizerFast:
    """A lower-casing WordPiece tokenizer learnt from `texts`; `[PAD]` is id 0, `[UNK]` id 1.

    `with_cls_sep` adds BERT's `[CLS] ... [SEP]` framing, which encoders need and LSTMs do not.
    """
    tokenizer = Tokenizer(models.WordPiece(unk_token=UNK))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    texts = list(texts)
    # the trainer numbers the "##x" pieces in hash-map order and breaks ties between merges on those numbers, so the
    # same texts gave other vocabularies from run to run (huggingface/tokenizers#1794), and other models from the
    # same seed. Named first, sorted, as the trainer's special tokens, they get fixed numbers; they stay in the
    # vocabulary but leave the special tokens afterwards, which are matched in raw text and skipped in decoding.
    pieces = sorted({f"{PIECE_PREFIX}{char}" for text in texts
                     for word, _ in tokenizer.pre_tokenizer.pre_tokenize_str(tokenizer.normalizer.normalize_str(text))
                     for char in word[1:]})
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=[PAD, UNK, CLS, SEP, MASK, *pieces],
                                        continuing_subword_prefix=PIECE_PREFIX)
    tokenizer.train_from_iterator(texts, trainer=trainer)
    state = json.loads(tokenizer.to_str())
    state["added_tokens"] = [token for token in state["added_tokens"] if not token["content"].startswith(PIECE_PREFIX)]
    tokenizer = Tokenizer.from_str(json.dumps(state))
    tokenizer.decoder = decoders.WordPiece(prefix=PIECE_PREFIX)  # "wonderful ##ly" decodes as "wonderfully"
    if with_cls_sep:
        cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:1 {SEP}:1", special_tokens=[(CLS, cls_id), (SEP, sep_id)])
    input_names = ["input_ids", "token_type_ids", "attention_mask"] if with_cls_sep else ["input_ids", "attention_mask"]
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token=PAD, unk_token=UNK, cls_token=CLS, sep_token=SEP, mask_token=MASK,
        model_max_length=max_length, model_input_names=input_names)


def load_tokenizer(path: str) -> PreTrainedTokenizerFast:
    """The fast tokenizer saved in a model directory (or named on the hub)."""
    return AutoTokenizer.from_pretrained(path, use_fast=True)


EOS = "<|endoftext|>"  # GPT-2's document separator; also the start token of an empty prompt
CHAR_UNK = "<|unk|>"


def _generator_tokenizer(tokenizer: Tokenizer, max_length: int, unk: str | None = None) -> PreTrainedTokenizerFast:
    """Wrap a generator's tokenizer: `<|endoftext|>` ends documents and doubles as padding (as in GPT-2)."""
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token=EOS, eos_token=EOS, pad_token=EOS,
                                   unk_token=unk, model_max_length=max_length,
                                   model_input_names=["input_ids", "attention_mask"])


def train_byte_bpe_tokenizer(texts: Iterable[str], vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE learnt from `texts`: any text encodes, nothing is unknown, case is kept."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return _generator_tokenizer(tokenizer, max_length)


def train_char_tokenizer(texts: Iterable[str], max_length: int) -> PreTrainedTokenizerFast:
    """One token per character seen in `texts` (as char-rnn and nanoGPT's shakespeare_char); others are `<|unk|>`."""
    chars = sorted(set().union(*(set(text) for text in texts)))
    vocab = {EOS: 0, CHAR_UNK: 1, **{char: i + 2 for i, char in enumerate(chars)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=CHAR_UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character alone
    tokenizer.decoder = decoders.Fuse()  # join without spaces
    tokenizer.add_special_tokens([EOS, CHAR_UNK])
    return _generator_tokenizer(tokenizer, max_length, unk=CHAR_UNK)
