"""HTML pages from the package's templates (``neuronscope/templates/``), always autoescaped.

Every page neuronscope writes comes from a Jinja2 template, so text from users,
models and files (class names, layer names, file names) is escaped by default;
markup that is trusted is built in templates, never in Python strings.
"""

from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, PackageLoader, StrictUndefined


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(
        loader=PackageLoader("neuronscope", "templates"),
        autoescape=True,
        undefined=StrictUndefined,  # a missing value is a bug, not an empty string
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_template(template: str, /, **context) -> str:
    """The template file ``template`` filled with ``context`` (any names, ``name`` included)."""
    return environment().get_template(template).render(**context)


def template_text(name: str) -> str:
    """A template file as it is (a stylesheet copied next to pages)."""
    env = environment()
    return env.loader.get_source(env, name)[0]
