"""Which parser family a model gets: from its chat template (snippets of real templates), its
GGUF metadata, or its Modelfile's override; and whether its output starts inside thinking."""

from __future__ import annotations

import pytest

from agentport.chat.families import family_for, starts_in_thinking
from agentport.errors import InvalidRequestError

# Excerpts of real chat templates, as they appear in GGUF / tokenizer_config.json files.
QWEN25_TEMPLATE = r"""{%- if tools %}
    {{- '<|im_start|>system\n' }}
    {{- "\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>" }}
    {{- "\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n" }}
{%- endif %}"""  # noqa: E501
QWEN3_TEMPLATE = (
    QWEN25_TEMPLATE
    + r"""
{%- if '</think>' in content %}
    {%- set reasoning_content = content.split('</think>')[0].rstrip('\n').split('<think>')[-1] %}
{%- endif %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\n\n</think>\n\n' }}
    {%- endif %}
{%- endif %}"""
)
QWEN3_CODER_TEMPLATE = r"""{%- for tool_call in message.tool_calls %}
    {{- '\n<tool_call>\n<function=' + tool_call.name + '>\n' }}
    {%- for args_name, args_value in tool_call.arguments|items %}
        {{- '<parameter=' + args_name + '>\n' }}
        {{- args_value }}
        {{- '\n</parameter>\n' }}
    {%- endfor %}
    {{- '</function>\n</tool_call>' }}
{%- endfor %}"""
LLAMA31_TEMPLATE = r"""{%- if tools is not none and not tools_in_user_message %}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- 'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.' }}
{%- endif %}
{%- if builtin_tools is defined and tool_call.name in builtin_tools %}
    {{- "<|python_tag|>" + tool_call.name + ".call(" }}
{%- endif %}"""  # noqa: E501
MISTRAL_V3_TEMPLATE = r"""{%- elif message.tool_calls is defined and message.tool_calls is not none %}
    {{- "[TOOL_CALLS][" }}
    {%- for tool_call in message.tool_calls %}
        {%- set out = tool_call.function|tojson %}
        {{- out[:-1] }}
        {{- ', "id": "' + tool_call.id + '"}' }}
    {%- endfor %}"""  # noqa: E501
MISTRAL_V11_TEMPLATE = r"""{%- for tool in message['tool_calls'] %}
    {{- '[TOOL_CALLS]' + tool['function']['name'] + '[ARGS]' + arguments }}
{%- endfor %}"""
DEEPSEEK_R1_TEMPLATE = (
    "{%- if message['role'] == 'assistant' and 'tool_calls' in message %}{%- for tool in "
    "message['tool_calls'] %}{%- if not ns.is_first %}{{'<｜Assistant｜><｜tool▁calls▁begin｜>"
    "<｜tool▁call▁begin｜>' + tool['type'] + '<｜tool▁sep｜>' + tool['function']['name'] + '\\n' + "
    "'```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<｜tool▁call▁end｜>'}}"
    "{%- endif %}{%- endfor %}{{'<｜tool▁calls▁end｜><｜end▁of▁sentence｜>'}}{%- endif %}"
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}"
)
SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.mark.parametrize(
    "template,family",
    [
        (QWEN25_TEMPLATE, "hermes"),
        (QWEN3_TEMPLATE, "hermes"),
        (QWEN3_CODER_TEMPLATE, "qwen3_coder"),
        (LLAMA31_TEMPLATE, "llama3"),
        (MISTRAL_V3_TEMPLATE, "mistral"),
        (MISTRAL_V11_TEMPLATE, "mistral"),
        (DEEPSEEK_R1_TEMPLATE, "deepseek"),
        (SMOLLM2_TEMPLATE, "hermes"),
        ("{% for m in messages %}{{ m.content }}{% endfor %}{{ tools | tojson }}", "generic"),
    ],
    ids=[
        "qwen2.5",
        "qwen3",
        "qwen3-coder",
        "llama3.1",
        "mistral-v3",
        "mistral-v11",
        "deepseek-r1",
        "no tools: hermes",
        "unknown tools format: generic",
    ],
)
def test_family_from_the_template(template, family):
    assert family_for(template) == family


def meta(name: str, architecture: str = "llama", key: str = "general.name") -> dict[str, str]:
    return {key: name, "general.architecture": architecture}


@pytest.mark.parametrize(
    "metadata,family",
    [
        (meta("Qwen3 Coder 30B A3B Instruct", "qwen3moe"), "qwen3_coder"),
        (meta("DeepSeek R1 Distill Llama 8B"), "deepseek"),
        (meta("Meta-Llama-3.1", key="general.basename"), "llama3"),
        (meta("Hermes 3 Llama 3.1 8B"), "hermes"),
        (meta("Devstral Small 2505"), "mistral"),
        (meta("SmolLM2 135M Instruct"), "hermes"),
    ],
)
def test_family_from_gguf_metadata_when_the_template_says_nothing(metadata, family):
    assert family_for(SMOLLM2_TEMPLATE, metadata) == family


def test_template_markers_come_before_metadata():
    metadata = {"general.name": "Mistral 7B", "general.architecture": "llama"}
    assert family_for(QWEN3_CODER_TEMPLATE, metadata) == "qwen3_coder"


def test_the_modelfile_override_wins_and_is_checked():
    assert family_for(QWEN25_TEMPLATE, override="qwen3-coder") == "qwen3_coder"
    assert family_for("", override="Llama3") == "llama3"
    with pytest.raises(InvalidRequestError, match="unknown parser 'nope'.*hermes"):
        family_for(QWEN25_TEMPLATE, override="nope")


@pytest.mark.parametrize(
    "prompt,inside",
    [
        ("<｜User｜>hi<｜Assistant｜><think>\n", True),
        ("<|im_start|>assistant\n<think>\n", True),
        ("<|im_start|>assistant\n<think>\n\n</think>\n\n", False),
        ("<|im_start|>assistant\n", False),
        ("[INST]hi[/INST][THINK]", True),
    ],
)
def test_starts_in_thinking(prompt, inside):
    assert starts_in_thinking(prompt) is inside
