"""Modelfiles: parsing (quoting, comments, case, typed parameters), errors that name their line,
printing back, and where FROM points."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agentport.errors import InvalidRequestError
from agentport.store.modelfile import (
    MAX_MODELFILE_CHARS,
    Modelfile,
    add_parameter,
    gguf_path,
    parse_modelfile,
    quote,
    to_modelfile,
)

PARSE_CASES = [
    ("bare FROM", "FROM smollm2:135m", Modelfile(source="smollm2:135m")),
    (
        "instructions in any case, comments and blank lines",
        "# a comment\n\nfrom ./m.gguf\n  # indented comment\nSyStEm be brief\n",
        Modelfile(source="./m.gguf", system="be brief"),
    ),
    (
        "bare values run to the end of the line, trimmed, # included",
        "FROM m\nSYSTEM   use # signs freely   \n",
        Modelfile(source="m", system="use # signs freely"),
    ),
    (
        "triple quotes span lines and keep inner quotes and spaces",
        'FROM m\nTEMPLATE """{{ .System }}\n  say "hi"\n"""\n',
        Modelfile(source="m", template='{{ .System }}\n  say "hi"\n'),
    ),
    (
        "plain quotes keep padding and may span lines",
        'FROM m\nSYSTEM "  padded  "\nMESSAGE user "two\nlines"\n',
        Modelfile(
            source="m",
            system="  padded  ",
            messages=[{"role": "user", "content": "two\nlines"}],
        ),
    ),
    (
        "a value ending in a quote inside triple quotes",
        'FROM m\nSYSTEM """he said "no""""\n',
        Modelfile(source="m", system='he said "no"'),
    ),
    (
        "typed parameters; stop accumulates; names are case-insensitive",
        "FROM m\nPARAMETER temperature 0.2\nPARAMETER num_ctx 4096\nPARAMETER stop <|im_end|>\n"
        'parameter STOP "User:"\nPARAMETER seed -1\nPARAMETER top_k 40\n',
        Modelfile(
            source="m",
            parameters={
                "temperature": 0.2,
                "num_ctx": 4096,
                "stop": ["<|im_end|>", "User:"],
                "seed": -1,
                "top_k": 40,
            },
        ),
    ),
    (
        "messages keep their order; licenses repeat",
        "FROM m\nMESSAGE system be kind\nMESSAGE User hello\nMESSAGE assistant hi!\n"
        "LICENSE MIT\nLICENSE Apache-2.0\n",
        Modelfile(
            source="m",
            messages=[
                {"role": "system", "content": "be kind"},
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "hi!"},
            ],
            licenses=["MIT", "Apache-2.0"],
        ),
    ),
    (
        "CRLF line endings and a byte order mark",
        '\ufeffFROM m\r\nSYSTEM """a\r\nb"""\r\n',
        Modelfile(source="m", system="a\nb"),
    ),
    ("an explicitly empty value", 'FROM m\nSYSTEM ""\n', Modelfile(source="m", system="")),
    (
        "the last TEMPLATE and SYSTEM win",
        "FROM m\nSYSTEM one\nSYSTEM two\n",
        Modelfile(source="m", system="two"),
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES]
)
def test_parse(text, expected):
    assert parse_modelfile(text) == expected


@pytest.mark.parametrize("text", [c[1] for c in PARSE_CASES], ids=[c[0] for c in PARSE_CASES])
def test_round_trip(text):
    parsed = parse_modelfile(text)
    assert parse_modelfile(to_modelfile(parsed)) == parsed


ERROR_CASES = [
    ("unknown instruction", "FROM m\n\nFORM x\n", "line 3: unknown instruction 'FORM'"),
    ("adapter", "FROM m\nADAPTER ./lora.gguf\n", "line 2: ADAPTER is not supported"),
    ("adapter in lower case", "FROM m\nadapter x\n", "ADAPTER is not supported"),
    ("draft", "FROM m\nDRAFT x\n", "line 2: DRAFT is not supported"),
    (
        "unknown parameter",
        "FROM m\nPARAMETER num_gpus 99\n",
        "line 2: unknown parameter 'num_gpus'",
    ),
    ("a word that is not a number", "FROM m\nPARAMETER top_k many\n", "line 2: parameter top_k"),
    ("a fraction for an integer", "FROM m\nPARAMETER num_ctx 1.5\n", "expected an integer"),
    ("a message role", "FROM m\nMESSAGE robot hi\n", "line 2: MESSAGE role 'robot'"),
    ("a parameter without a value", "FROM m\nPARAMETER temperature\n", "line 2: PARAMETER needs"),
    ("an instruction without a value", "FROM m\nSYSTEM\n", "line 2: SYSTEM needs a value"),
    ("an unclosed quote", 'FROM m\n# x\nSYSTEM """never\nclosed\n', "line 3: SYSTEM: the quoted"),
    ("no FROM", "SYSTEM hi\n", "no FROM line"),
    ("two FROMs", "FROM a\nFROM b\n", "line 2: FROM is given twice"),
    ("punctuation in an instruction", "FROM m\nSYSTEM: hi\n", "line 2: unknown instruction"),
]


@pytest.mark.parametrize(
    ("text", "message"), [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_errors_name_their_line(text, message):
    with pytest.raises(InvalidRequestError) as caught:
        parse_modelfile(text)
    assert message in caught.value.message


AWKWARD_VALUES = [
    "plain",
    "  leading and trailing  ",
    'a "quoted" word',
    '"starts with a quote',
    'ends with a quote"',
    "multi\nline\n",
    'multi\nline with "quotes"\n',
    'line ends with quote"\nand more',
    "",
    "# not a comment",
    "\ttab",
]


@pytest.mark.parametrize("value", AWKWARD_VALUES)
def test_any_value_prints_and_parses_back(value):
    parsed = Modelfile(source="m", system=value, messages=[{"role": "user", "content": value}])
    if value:
        parsed.parameters = {"stop": [value]}
    assert parse_modelfile(to_modelfile(parsed)) == parsed


def test_a_value_ollamas_quoting_cannot_hold_is_refused():
    # No quoting survives a line that ends in `"""` (it closes triple quotes, and its last `"`
    # closes plain ones), and Ollama's Modelfiles have no escapes.
    with pytest.raises(InvalidRequestError, match="cannot be written"):
        quote('ends with triple"""\nand "more"')


def test_quote_prefers_bare_then_triple_quotes():
    assert quote("x y") == "x y"
    assert quote("a\nb") == '"""a\nb"""'
    assert quote("") == '""'


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("temperature", 1, {"temperature": 1.0}),
        ("temperature", "0.5", {"temperature": 0.5}),
        ("num_ctx", 2048.0, {"num_ctx": 2048}),
        ("NUM_PREDICT", "64", {"num_predict": 64}),
        ("stop", "x", {"stop": ["x"]}),
        ("stop", ["x", "y"], {"stop": ["x", "y"]}),
    ],
)
def test_json_parameters_are_typed(name, value, expected):
    parameters: dict = {}
    add_parameter(parameters, name, value)
    assert parameters == expected


@pytest.mark.parametrize(
    ("name", "value"),
    [("seed", True), ("top_k", 1.5), ("stop", [1]), ("mirostatt", 1), ("temperature", "hot")],
)
def test_bad_json_parameters_are_refused(name, value):
    with pytest.raises(InvalidRequestError):
        add_parameter({}, name, value)


def test_from_paths(tmp_path: Path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    assert gguf_path("./m.gguf", tmp_path) == model
    assert gguf_path("m.gguf", tmp_path) == model
    assert gguf_path(str(model), None) == model
    assert gguf_path("smollm2:135m", tmp_path) is None
    assert gguf_path("hf.co/owner/repo:q4_k_m", None) is None
    with pytest.raises(InvalidRequestError, match="no such file"):
        gguf_path("./missing.gguf", tmp_path)
    with pytest.raises(InvalidRequestError, match="relative path"):
        gguf_path("./m.gguf", None)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("PARSER qwen3-coder", "qwen3_coder"),
        ("PARSER hermes", "hermes"),
        ("parser Llama3", "llama3"),
    ],
)
def test_parser_names_the_tool_call_family_and_round_trips(line, expected):
    parsed = parse_modelfile(f"FROM ./m.gguf\n{line}\n")
    assert parsed.parser == expected
    assert parse_modelfile(to_modelfile(parsed)).parser == expected


@pytest.mark.parametrize("value", ["", "../x", "a b", "x" * 40])
def test_a_parser_name_that_is_not_a_name_is_refused(value):
    with pytest.raises(InvalidRequestError, match="line 2: PARSER"):
        parse_modelfile(f"FROM ./m.gguf\nPARSER {value}\n")


HOSTILE_MODELFILES = {
    "a long heredoc": 'FROM m\nTEMPLATE """' + "line of template text\n" * 45_000 + '"""\n',
    "an unterminated triple quote": 'FROM m\nSYSTEM """' + "abc \n" * 190_000,
    "an unterminated plain quote": 'FROM m\nSYSTEM "' + "a\n" * 480_000,
    "many lines": "FROM m\n" + "PARAMETER stop a\n" * 58_000,
    "one long line": "FROM m\nSYSTEM " + "a" * 990_000,
    "many comments": "#\n" * 480_000 + "FROM m\n",
}


@pytest.mark.parametrize("text", HOSTILE_MODELFILES.values(), ids=HOSTILE_MODELFILES.keys())
def test_a_hostile_one_megabyte_modelfile_parses_in_linear_time(text):
    assert 900_000 < len(text) <= MAX_MODELFILE_CHARS
    started = time.perf_counter()
    try:
        parse_modelfile(text)
    except InvalidRequestError as error:
        assert "never closed" in error.message
    assert time.perf_counter() - started < 2.0


def test_a_modelfile_past_the_size_limit_is_refused():
    with pytest.raises(InvalidRequestError, match="longer than"):
        parse_modelfile("FROM m\n" + "#" * MAX_MODELFILE_CHARS)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"""a\n\n  """  ', "a\n\n  "),
        ('""""\nx"""', '"\nx'),
        ('"a"  ', "a"),
        ('"""\n"""', "\n"),
    ],
)
def test_quoted_values_close_at_the_first_closing_line_end(value, expected):
    assert parse_modelfile(f"FROM m\nSYSTEM {value}\n").system == expected
