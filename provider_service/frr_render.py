"""FrrIntent -> the text of a whole frr.conf: a pure function over frr_templates/.

Strict undefined variables turn a template typo into an error instead of an empty
line; the intent's tuples are already sorted, so the same intent renders the same text.
"""

from __future__ import annotations

from functools import cache

import jinja2

from provider_service.frr_intent import FrrIntent

ARTIFACT = "frr.conf"


@cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("frr_templates", ""),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # FRR config, not HTML; every value in the intent is validated
    )
    return environment.get_template("frr.conf.j2")


def render_frr(intent: FrrIntent) -> str:
    return _template().render(i=intent)
