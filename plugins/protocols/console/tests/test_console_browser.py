"""The console in a real browser: Playwright driving Debian's Chromium (the system executable; Playwright's own
browser download is not used).  Log in with a token, watch a psql DELETE held by the pipeline appear without a
reload, approve it, and see psql complete; search the audit.  With GW_UPDATE_SCREENSHOTS=1 the test also writes
the screenshots of docs/plugins/console.md."""

from __future__ import annotations

from console_env import Gateway, direct, log_in, shot


def test_approve_a_held_delete_from_the_page(gateway: Gateway, browser: object) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    log_in(page, gateway, gateway.token("dana", "dba"))
    page.wait_for_selector("#live:not([hidden])", state="attached", timeout=15000)
    held = gateway.hold(gateway.token("agent-7", "agents"), f"delete from {gateway.table}")
    # The request appears without a reload (server-sent events), with its id on the row.
    row = page.locator("#pending tbody tr", has_text=gateway.table)
    row.wait_for(timeout=20000)
    request_id = row.get_attribute("data-request")
    assert request_id and request_id in row.inner_text()
    assert "agent-7" in row.inner_text()
    shot(page, "approvals")
    row.get_by_role("button", name="Approve").click()
    page.wait_for_url("**/approvals")
    out = held.wait()
    assert out.returncode == 0, out.stderr
    assert direct(f"select count(*) from {gateway.table}").strip() == "0"
    decided = page.locator("#decided tbody tr", has_text=request_id)
    assert "dana" in decided.inner_text()


def test_deny_with_a_reason_and_search_the_audit(gateway: Gateway, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    held = gateway.hold(gateway.token("agent-7", "agents"), f"delete from {gateway.table}")
    log_in(page, gateway, gateway.token("dana", "dba"))
    row = page.locator("#pending tbody tr", has_text=gateway.table)
    row.wait_for(timeout=20000)
    row.get_by_label("Reason for denying").fill("not during business hours")
    row.get_by_role("button", name="Deny").click()
    out = held.wait()
    assert out.returncode != 0 and "not during business hours" in out.stderr
    assert direct(f"select count(*) from {gateway.table}").strip() == "2"
    page.get_by_role("link", name="Audit").click()
    page.get_by_label("Text").fill(gateway.table)
    page.get_by_role("button", name="Search", exact=True).click()
    results = page.locator("#audit-records tbody tr", has_text=gateway.table)
    results.first.wait_for()
    assert "agent-7" in results.first.inner_text()
    shot(page, "audit")


def test_a_viewer_sees_no_approve_button(gateway: Gateway, browser: object) -> None:
    held = gateway.hold(gateway.token("agent-7", "agents"), f"delete from {gateway.table}")
    page = browser.new_page()  # type: ignore[attr-defined]
    log_in(page, gateway, gateway.token("audrey", "auditors"))
    row = page.locator("#pending tbody tr", has_text=gateway.table)
    row.wait_for(timeout=20000)
    assert row.get_by_role("button", name="Approve").count() == 0
    assert "approvers: dba" in row.inner_text()
    import httpx

    request_id = row.get_attribute("data-request")
    httpx.post(f"{gateway.url}/api/approvals/{request_id}/deny", json={"reason": "cleanup"},
               headers={"authorization": f"Bearer {gateway.token('dana', 'dba')}"})
    held.wait()
