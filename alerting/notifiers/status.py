"""The shared failure table: which HTTP statuses and vendor error codes are worth retrying."""

from __future__ import annotations

#: HTTP statuses that may succeed if the same request is sent again later (every 5xx too)
RETRYABLE_HTTP = frozenset({408, 425, 429})


def http_retryable(status: int) -> bool:
    """408 Request Timeout, 425 Too Early, 429 Too Many Requests and every 5xx are retryable;
    any other 4xx (bad request, auth, not found, payload too large) will fail again, as will 3xx."""
    return status in RETRYABLE_HTTP or 500 <= status <= 599


#: vendor error codes (in a 200 answer's JSON) → retryable?  Codes not listed are not retryable
#: (a wrong key, signature, keyword or payload does not fix itself), except where noted.
VENDOR_CODES: dict[str, dict[int, bool]] = {
    "dingtalk": {
        -1: True,  # system busy
        130101: True,  # send too fast: more than 20 messages a minute
        130102: True,  # send too fast (burst)
        310000: False,  # keywords not in content / sign not match / IP not in whitelist
        300001: False,  # access_token invalid
        400101: False,  # robot does not exist / access token invalid
        400102: False,  # robot disabled
        90030: False,  # webhook over limit (monthly/daily quota): retrying soon will not help
    },
    "wecom": {
        -1: True,  # system busy
        45009: True,  # api freq out of limit (20 messages a minute per robot)
        45033: True,  # too many concurrent calls
        93000: False,  # invalid webhook url (key)
        93004: False,  # robot removed from the group
        40008: False,  # invalid message type
        40058: False,  # invalid parameter
        44004: False,  # empty content
    },
    "feishu": {
        9499: True,  # too many requests
        11232: True,  # frequency limited
        19021: False,  # sign match fail or timestamp is not within one hour of the server time
        19022: False,  # IP not allowed
        19024: False,  # keyword not in content
        19001: False,  # param invalid
        11246: False,  # message too large
    },
}


def vendor_retryable(vendor: str, code: int) -> bool:
    return VENDOR_CODES.get(vendor, {}).get(code, False)
