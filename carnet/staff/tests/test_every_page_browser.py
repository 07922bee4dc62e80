"""In a real browser at a tablet's width (820x1180): every staff page a GET can open fits the
screen (no sideways scrolling of the page) and the top bar keeps the staff member's name and
Log out on screen (issue 20 point 9). The pages and their sample records are the access matrix's."""

import pytest
from django.urls import reverse

from carnet.clinic.models import Product
from carnet.conftest import log_in, make_catalog, make_staff
from carnet.core.permissions import AccessLevel
from carnet.staff.tests.test_access_matrix import POST_ONLY_PAGES, World, page_arg, page_routes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Files, not pages: PDFs and the import's spreadsheet template (a download).
NOT_PAGES = {"billing:receipt_pdf", "billing:statement_pdf", "imports:template"}


def test_every_staff_page_fits_a_tablet_with_the_top_bar_whole(page):
    catalog = make_catalog()
    world = World(catalog)
    world.ids["products"] = Product.objects.create(
        name="Oil", price_minor=1000, income_category=catalog["income_category"]
    ).pk
    # The widest top bar: every menu item, and a long name with its access level.
    owner = make_staff(AccessLevel.ACCOUNT_OWNER, name="Maximiliana Featherstonehaugh-Okonkwo")
    page.set_viewport_size({"width": 820, "height": 1180})
    log_in(page, owner.user)
    page.wait_for_load_state("load")
    seen, problems = 0, []
    for name, pattern in page_routes():
        if name.split(":")[1] in POST_ONLY_PAGES or name in NOT_PAGES:
            continue
        world.fresh(owner, needs=name, method="get")
        url = reverse(
            name, kwargs={k: page_arg(world, name, k) for k in pattern.pattern.converters}
        )
        response = page.goto(url)
        if response is None or "text/html" not in response.headers.get("content-type", ""):
            continue
        seen += 1
        width, inner = page.evaluate(
            "() => [document.documentElement.scrollWidth, window.innerWidth]"
        )
        if width > inner:
            wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
                .map(e => e.tagName + '.' + e.className).slice(0, 4)""")
            problems.append(f"{url}: {width} px wide {wide}")
        bar = page.locator("header.topbar")
        if bar.count():
            for what in (
                bar.get_by_text(owner.display_name),
                bar.get_by_role("button", name="Log out"),
            ):
                box = what.bounding_box()
                if box is None or box["x"] < 0 or box["x"] + box["width"] > inner + 1:
                    problems.append(f"{url}: {what} is off the screen ({box})")
    assert not problems, "\n".join(problems)
    assert seen > 60, seen  # the walk really opened the pages
