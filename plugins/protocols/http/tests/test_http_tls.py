"""TLS on both sides: HTTPS for agents (curl --cacert), and an https upstream verified by default."""

from __future__ import annotations

from gw.testing import running_gateway


async def test_https_listener_serves_curl_with_the_configured_certificate(http_config, http_pm, upstream,
                                                                        tls_files, curl) -> None:
    tls = f'tls = {{ cert = "{tls_files.cert}", key = "{tls_files.key}" }}'
    config = http_config(upstream.url, listener=tls)
    async with running_gateway(config, pm=http_pm) as gw:
        url = f"https://127.0.0.1:{gw.port('api')}/echo"
        code, out, err = await curl("--cacert", str(tls_files.ca), "-H", "Authorization: Bearer tok-agent",
                                    url)
        assert code == 0, err
        assert b'"x-forwarded-proto", "https"' in out
        code, _, err = await curl("--cacert", str(tls_files.other_ca), url)
        assert code != 0 and b"certificate" in err.lower()
        code, out, _ = await curl("--cacert", str(tls_files.ca), "-H", "Authorization: Bearer tok-agent", url)
        assert code == 0, "a failed handshake does not disturb the listener"


async def test_https_upstream_is_verified_with_ca_file(http_config, http_pm, tls_upstream, tls_files,
                                                       agent) -> None:
    config = http_config(tls_upstream.url, upstream=f'ca_file = "{tls_files.ca}"')
    async with running_gateway(config, pm=http_pm) as gw, agent(gw) as c:
        r = await c.get("/api/v1/customers/5")
    assert r.status_code == 200 and r.json()["id"] == "5"
    assert tls_upstream.last().header("Authorization") == "Bearer upstream-secret-7f3a9c2e"


async def test_untrusted_upstream_certificate_is_a_502_with_the_reason(http_config, http_pm, tls_upstream,
                                                                       tls_files, agent) -> None:
    for extra in (f'ca_file = "{tls_files.other_ca}"', ""):
        config = http_config(tls_upstream.url, upstream=extra)
        async with running_gateway(config, pm=http_pm) as gw, agent(gw) as c:
            r = await c.get("/api/v1/customers/5")
            assert r.status_code == 502
            body = r.json()
            assert body["reason"] == "upstream_tls"
            assert "certificate verify failed" in body["error"] or "certificate" in body["error"]
            r2 = await c.get("/api/v1/customers/6")
            assert r2.status_code == 502, "each request tries again and fails the same clear way"
    assert tls_upstream.seen == []


async def test_verify_false_accepts_any_upstream_certificate(http_config, http_pm, tls_upstream,
                                                             agent) -> None:
    config = http_config(tls_upstream.url, upstream="verify = false")
    async with running_gateway(config, pm=http_pm) as gw, agent(gw) as c:
        assert (await c.get("/api/v1/customers/5")).status_code == 200


async def test_plain_http_to_a_tls_upstream_is_a_clear_502(http_config, http_pm, tls_upstream, agent) -> None:
    config = http_config(tls_upstream.url.replace("https:", "http:"), upstream='read_timeout = "2s"')
    async with running_gateway(config, pm=http_pm) as gw, agent(gw) as c:
        r = await c.get("/api/v1/customers/5")
    assert r.status_code in (502, 504)
    assert r.json()["reason"] in ("upstream_protocol", "upstream_closed", "upstream_timeout")
