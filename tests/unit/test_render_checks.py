"""The render budget's first check (shared/render_sandbox.py): which templates may render in the caller.

A *linear* template does work bounded by its size and its data and renders in
process; anything else goes to a child process under the memory and CPU
budget.  Each rule of ``is_linear`` is pinned by a pair: the smallest template
it lets through and the smallest one it sends to a child.  (The budget itself,
measured on the processes' memory, is tests/integration/test_render_budget.py.)
"""

from __future__ import annotations

import pytest

from vestnik.shared.render_sandbox import MAX_LINEAR_NODES, MAX_LOOP_BODY_NODES, is_linear, needs_child
from vestnik.shared.rendering import parse

LINEAR = [
    "plain text only",
    "{{ name }}",
    "{{ client.name }}",
    "{{ items[0] }}",
    "{{ items[1:3] }}",
    "{{ items[:2] }}",
    "{{ items[::2] }}",
    "{{ items[i] }}",
    "{{ name|upper }}",
    "{{ name|truncate(20) }}",
    "{{ amount|money('RUB') }}",
    "{{ name|e }}",
    "{{ name|upper|e }}",  # one growing filter after same-size ones
    "{{ tags|join(', ') }}",
    "{{ tags|join('0123456789abcdef') }}",  # a separator of 16 characters
    "{{ name is defined }}",
    "{{ a ~ b ~ c ~ d ~ e ~ f ~ g ~ h }}",  # eight operands
    "{{ a + b }}",
    "{{ a - b }}",
    "{{ a and b }}",
    "{{ a or b }}",
    "{{ not a }}",
    "{{ -a }}",
    "{{ +a }}",
    "{{ a == b }}",
    "{{ a < b < c }}",
    "{{ a if b else c }}",
    "{{ a if b }}",
    "{% if a %}x{% elif b %}{{ y }}{% else %}{{ z }}{% endif %}",
    "{% for x in items %}{{ x }}{% endfor %}",
    "{% for x in data.items %}{{ x }}{% endfor %}",
    "{% for k, v in stats.items() %}{{ k }}={{ v }}{% endfor %}",
    "{% for k in stats.keys() %}{{ k }}{% endfor %}",
    "{% for v in stats.values() %}{{ v }}{% else %}none{% endfor %}",
    "{% if a %}{% for x in items %}{{ x }}{% endfor %}{% endif %}",
    "{{ '" + "x" * 200 + "' }}",  # a constant of 200 characters is still text
    # One growing filter is allowed per value: inside an attribute, an index, a slice, an argument, a test
    "{{ (x|e).y }}",
    "{{ (x|e)[0] }}",
    "{{ items[:n|e] }}",
    "{{ items[n|e:] }}",
    "{{ x|truncate(n|e) }}",
    "{% if a|e %}x{% endif %}",
]

NOT_LINEAR = [
    "{% set a = 1 %}{{ a }}",
    "{% macro m() %}{% endmacro %}",
    "{{ x * 3 }}",
    "{{ '%9d' % x }}",
    "{{ x ** 2 }}",
    "{{ x // 2 }}",
    "{{ x.upper() }}",
    "{{ [x, x] }}",
    "{{ {'a': x} }}",
    "{{ x|replace('a', 'b') }}",  # an unknown filter
    "{{ x|e|e }}",  # two growing filters
    "{{ x|e|tojson }}",
    "{{ x|join(y) }}",  # join's separator not a short constant
    "{{ x|join('0123456789abcdefg') }}",  # 17 characters
    "{{ x|join(sep=',') }}",
    "{{ x|truncate(*args) }}",
    "{{ x|truncate(**kw) }}",
    "{{ '" + "x" * 201 + "' }}",
    "{{ a ~ b ~ c ~ d ~ e ~ f ~ g ~ h ~ i }}",  # nine operands
    "{{ a + b + c + d + e + f + g + h + i }}",
    "{% for a in x %}{% for b in a %}{% endfor %}{% endfor %}",  # nested loops
    "{% for a in x %}{% endfor %}{% for b in y %}{% endfor %}",  # two loops multiply nothing, but count
    "{% for i in range(3) %}{% endfor %}",
    "{% for i in lipsum %}{% endfor %}",
    "{% for i in range %}{% endfor %}",
    "{% for i in cycler %}{% endfor %}",
    "{% for i in joiner %}{% endfor %}",
    "{% for x in stats.items(k=1) %}{% endfor %}",
    "{% for x in stats.items(*a) %}{% endfor %}",
    "{% for x in stats.items(**k) %}{% endfor %}",
    "{{ (x|e).y|e }}",
    "{{ (x|e)[0]|e }}",
    "{% for x in items if x %}{{ x }}{% endfor %}",  # a loop filter
    "{% for x in items recursive %}{{ loop(x) }}{% endfor %}",
    "{% for x in items(1) %}{% endfor %}",
    "{% for x in stats.items(1) %}{% endfor %}",
    "{% for x in stats.pop() %}{% endfor %}",
    "{% for x in 'abc' %}{% endfor %}",
    "{% for x in items %}{% set y = x %}{% endfor %}",
    "{% if a %}{% set b = 1 %}{% endif %}",
    "{% if a * 2 %}x{% endif %}",
    "{% if a %}{{ a * 2 }}{% endif %}",
    "{% if a %}x{% else %}{{ a * 2 }}{% endif %}",
    "{% if a %}x{% elif b %}{{ a * 2 }}{% endif %}",
    "{{ items[a * 2] }}",
    "{{ items[a * 2:] }}",
    "{{ items[:a * 2] }}",
    "{{ items[::a * 2] }}",
    "{{ (a * 2).b }}",
    "{{ (a * 2)|upper }}",
    "{{ x|truncate(a * 2) }}",
    "{{ x|truncate(length=a * 2) }}",
    "{{ x is divisibleby(a * 2) }}",
    "{{ a ~ b * 2 }}",
    "{{ a and b * 2 }}",
    "{{ a * 2 or b }}",
    "{{ not a * 2 }}",
    "{{ a == b * 2 }}",
    "{{ a * 2 == b }}",
    "{{ a * 2 if b else c }}",
    "{{ a if b * 2 else c }}",
    "{{ a if b else c * 2 }}",
    "{% include 'x' %}",
    "{% block b %}{% endblock %}",
    "{% filter upper %}x{% endfilter %}",
]


@pytest.mark.parametrize("source", LINEAR)
def test_bounded_templates_render_in_process(source):
    assert is_linear(parse(source)), source
    assert not needs_child(source)


@pytest.mark.parametrize("source", NOT_LINEAR)
def test_anything_that_could_do_real_work_goes_to_a_child(source):
    assert not is_linear(parse(source)), source
    assert needs_child(source)


def test_a_growing_filter_inside_a_growing_filters_argument_starts_counting_again():
    # The argument is a separate value: its own escape does not make the outer one the second.
    assert is_linear(parse("{{ a|e ~ b|e }}"))
    assert is_linear(parse("{{ x|truncate(n|int) }}"))
    assert is_linear(parse("{{ (a|e) if b|e else c }}"))


def test_growing_filters_in_a_condition_or_comparison_do_not_count_against_the_output():
    assert is_linear(parse("{{ (a|e) and (b|e) }}"))
    assert is_linear(parse("{{ (a|e) == (b|e) }}"))
    assert is_linear(parse("{{ not (a|e) }}"))
    assert is_linear(parse("{{ items[a|e] }}"))


def test_growing_filters_count_across_concatenation_and_conditional_branches():
    assert not is_linear(parse("{{ (a|e ~ b)|e }}"))
    assert not is_linear(parse("{{ (a|e if c else b)|e }}"))
    assert not is_linear(parse("{{ (x.y|e)|e }}"))
    assert not is_linear(parse("{{ (x[0]|e)|e }}"))


def test_the_node_budget_is_exact():
    # Adjacent outputs are one Output node: "{{ a }}" * n is 1 + n nodes.
    fits = "{{ a }}" * (MAX_LINEAR_NODES - 1)
    assert is_linear(parse(fits))
    assert not is_linear(parse(fits + "{{ a }}"))


def test_the_loop_body_budget_is_exact():
    body = "{{ a }}" * (MAX_LOOP_BODY_NODES - 1)  # one Output node and its names
    assert is_linear(parse("{% for x in items %}" + body + "{% endfor %}"))
    assert not is_linear(parse("{% for x in items %}" + body + "{{ a }}{% endfor %}"))


def test_a_loop_body_counts_towards_the_whole_templates_budget():
    loop = "{% for x in items %}" + "{{ a }}" * (MAX_LOOP_BODY_NODES - 1) + "{% endfor %}"
    rest = MAX_LINEAR_NODES - 1 - MAX_LOOP_BODY_NODES - 1  # the For node, its body, the next Output node
    assert is_linear(parse(loop + "{{ a }}" * rest))
    assert not is_linear(parse(loop + "{{ a }}" * (rest + 1)))


def test_a_syntax_error_renders_in_process_where_it_fails_at_once():
    assert not needs_child("{% if %}")
