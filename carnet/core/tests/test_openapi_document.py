"""The OpenAPI document says the same whatever width the code's docstrings are wrapped at (issue 24:
re-wrapping lines to 100 columns must not change the API's document)."""

import re

from carnet.api import api, descriptions_unwrapped


def test_descriptions_carry_no_source_line_breaks():
    document = api.get_openapi_schema()
    found = []

    def walk(node, where):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "description" and isinstance(value, str):
                    if re.search(r"(?<!\n)\n(?!\n)", value):
                        found.append(where)
                else:
                    walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(document, "")
    assert len(str(document)) > 10_000 and not found, found[:5]


def test_a_wrapped_docstring_reads_as_one_line_and_paragraphs_stay():
    wrapped = {"paths": [{"description": "Start saving a card\nwith Stripe.js.\n\nThen POST it."}]}
    assert descriptions_unwrapped(wrapped) == {
        "paths": [{"description": "Start saving a card with Stripe.js.\n\nThen POST it."}]
    }


def test_the_document_names_no_spec_section_or_issue():
    """Integrators read the document: the project's own bookkeeping (SPEC 9.11, issue 22) means
    nothing to them."""
    text = str(api.get_openapi_schema())
    assert len(text) > 10_000
    assert not re.findall(r".{40}(?:\bSPEC\b|\b[Ii]ssue \d).{20}", text)
