"""The chaos suite's accounting (chaos/checks.py) on synthetic inputs, and the haproxy
configuration it derives from deploy/haproxy.cfg. The suite itself is `make chaos`; it is
too slow for the unit tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from chaos.checks import (  # noqa: E402
    Ack,
    Delivery,
    Event,
    Gap,
    check_subscription,
    compare_histories,
    missing_from_history,
)
from chaos.cluster import (  # noqa: E402
    HAPROXY_TEMPLATE,
    NGINX_TEMPLATE,
    Node,
    haproxy_config,
    nginx_config,
)


def acks(n: int, epoch_start: int = 1) -> list[Ack]:
    return [Ack(f"m{i}", i) for i in range(epoch_start, epoch_start + n)]


def delivered(offsets: list[int], epoch: str = "E1") -> list[Event]:
    return [Delivery(f"m{i}", i, epoch) for i in offsets]


def test_everything_delivered_once_in_order_passes() -> None:
    report = check_subscription(delivered([1, 2, 3, 4]), acks(4))
    assert report.ok
    assert (report.deliveries, report.gaps, report.gapped) == (4, 0, [])
    assert report.problems() == []


def test_a_missing_publication_without_a_gap_is_lost() -> None:
    report = check_subscription(delivered([1, 2, 4]), acks(4))
    assert not report.ok
    assert report.lost == ["m3"]
    assert report.problems() == ["1 lost: m3"]


def test_publications_missing_at_the_end_are_lost() -> None:
    report = check_subscription(delivered([1, 2]), acks(4))
    assert report.lost == ["m3", "m4"]


def test_publications_missing_behind_a_reported_gap_are_explicit_gaps() -> None:
    events = [*delivered([1, 2]), Gap(), *delivered([5, 6])]
    report = check_subscription(events, acks(6))
    assert report.ok
    assert (report.gaps, report.gapped, report.lost) == (1, ["m3", "m4"], [])


def test_a_gap_elsewhere_does_not_excuse_a_silent_skip() -> None:
    # m3 is skipped between 2 and 4 with no gap reported there; the gap later covers m6 only
    events = [*delivered([1, 2, 4, 5]), Gap(), *delivered([7])]
    report = check_subscription(events, acks(7))
    assert report.lost == ["m3"]
    assert report.gapped == ["m6"]


def test_a_new_epoch_after_a_gap_explains_the_old_streams_tail() -> None:
    events = [*delivered([1, 2]), Gap(), Delivery("n1", 1, "E2")]
    report = check_subscription(events, [*acks(4), Ack("n1", 1)])
    assert report.ok
    assert report.gapped == ["m3", "m4"]


def test_a_new_epoch_without_a_gap_loses_the_old_streams_tail() -> None:
    events = [*delivered([1, 2]), Delivery("n1", 1, "E2")]
    report = check_subscription(events, [*acks(4), Ack("n1", 1)])
    assert report.lost == ["m3", "m4"]


def test_a_gap_at_the_end_covers_what_follows_its_last_delivery() -> None:
    report = check_subscription([*delivered([1]), Gap()], acks(3))
    assert (report.gapped, report.lost) == (["m2", "m3"], [])


def test_a_publication_delivered_twice_is_duplicated() -> None:
    report = check_subscription(delivered([1, 2, 2, 3]), acks(3))
    assert report.duplicated == ["m2"]
    assert not report.ok


def test_two_publications_at_one_position_are_duplicated() -> None:
    events = [Delivery("m1", 1, "E1"), Delivery("x", 1, "E1")]
    report = check_subscription(events, acks(1))
    assert report.duplicated == ["x"]


def test_the_same_offset_in_another_epoch_is_not_a_duplicate() -> None:
    events = [Delivery("m1", 1, "E1"), Gap(), Delivery("n1", 1, "E2")]
    report = check_subscription(events, [Ack("m1", 1), Ack("n1", 1)])
    assert report.ok


def test_offsets_going_back_are_out_of_order() -> None:
    report = check_subscription(delivered([1, 3, 2, 4]), acks(4))
    assert report.out_of_order == ["m2"]
    assert report.lost == []


def test_a_delivery_at_another_offset_than_its_ack_is_a_mismatch() -> None:
    events = [Delivery("m1", 1, "E1"), Delivery("m2", 7, "E1")]
    report = check_subscription(events, acks(2))
    assert report.offset_mismatch == ["m2"]


def test_unacknowledged_deliveries_are_counted_but_not_failures() -> None:
    # a publish whose reply never came may still have been made
    report = check_subscription(delivered([1, 2, 3]), acks(2))
    assert report.ok
    assert report.deliveries == 3


def test_problems_show_at_most_five_examples() -> None:
    report = check_subscription([], acks(7))
    assert report.problems() == ["7 lost: m1, m2, m3, m4, m5, ..."]


def test_identical_histories_have_no_differences() -> None:
    history = [(1, "m1"), (2, "m2")]
    assert compare_histories({"node1": history, "node2": list(history)}) == []
    assert compare_histories({}) == []


def test_a_history_that_differs_is_reported_with_its_node() -> None:
    problems = compare_histories(
        {"node1": [(1, "m1"), (2, "m2")], "node2": [(1, "m1")], "node3": [(1, "m1"), (2, "m2")]}
    )
    assert len(problems) == 1
    assert problems[0].startswith("node2 differs from node1 (1 vs 2 publications")
    assert "(2, 'm2')" in problems[0]


def test_acknowledged_publications_missing_from_history_are_reported() -> None:
    history = [(1, "m1"), (3, "m3")]
    assert missing_from_history(acks(3), history, [set(), set()]) == ["m2"]
    assert missing_from_history(acks(3), history, []) == ["m2"]


def test_a_publication_at_another_offset_in_history_is_missing() -> None:
    assert missing_from_history(acks(2), [(1, "m1"), (5, "m2")], [set()]) == ["m2"]


def test_a_publication_every_subscriber_was_told_it_missed_may_be_gone() -> None:
    # a stream Redis lost: what every subscription reported as a gap is excused
    assert missing_from_history(acks(3), [(1, "m1")], [{"m2", "m3"}, {"m2", "m3"}]) == []
    # one subscription got no gap report for m3: its absence is not excused
    assert missing_from_history(acks(3), [(1, "m1")], [{"m2", "m3"}, {"m2"}]) == ["m3"]


def _nodes(tmp_path: Path) -> list[Node]:
    return [Node(f"node{i}", tmp_path, 9000 + i, "redis://127.0.0.1:1/0") for i in (1, 2)]


def test_the_suite_config_is_the_shipped_one_with_its_ports(tmp_path: Path) -> None:
    text = haproxy_config(HAPROXY_TEMPLATE.read_text(), 7000, tmp_path / "s.sock", _nodes(tmp_path))
    assert "bind 127.0.0.1:7000" in text
    assert f"stats socket {tmp_path / 's.sock'}" in text
    assert "server node1 127.0.0.1:9001\n    server node2 127.0.0.1:9002\n" in text
    assert "127.0.0.1:8765" not in text  # the shipped server lines are replaced
    assert "option httpchk GET /healthz" in text
    assert "timeout tunnel" in text


def test_a_template_without_health_checks_is_refused(tmp_path: Path) -> None:
    template = HAPROXY_TEMPLATE.read_text().replace("option httpchk", "# no check")
    with pytest.raises(ValueError, match="option httpchk"):
        haproxy_config(template, 7000, tmp_path / "s.sock", _nodes(tmp_path))


def test_the_suite_nginx_config_is_the_shipped_one_with_its_ports(tmp_path: Path) -> None:
    text = nginx_config(NGINX_TEMPLATE.read_text(), 7000, tmp_path, _nodes(tmp_path))
    assert "listen 127.0.0.1:7000;" in text
    assert "least_conn;\n        server 127.0.0.1:9001 " in text
    assert "127.0.0.1:8765" not in text
    assert f"pid {tmp_path / 'nginx.pid'};" in text
    assert "worker_shutdown_timeout 1s;" in text


def test_an_nginx_template_without_upgrade_headers_is_refused(tmp_path: Path) -> None:
    template = NGINX_TEMPLATE.read_text().replace("proxy_set_header Upgrade", "# none")
    with pytest.raises(ValueError, match="Upgrade"):
        nginx_config(template, 7000, tmp_path, _nodes(tmp_path))


TEMPLATES = {"haproxy": HAPROXY_TEMPLATE, "nginx": NGINX_TEMPLATE}


def _check_command(balancer: str, config: Path, directory: Path) -> list[str]:
    if balancer == "haproxy":
        return ["haproxy", "-c", "-f", str(config)]
    return ["nginx", "-t", "-q", "-c", str(config), "-p", str(directory)]


@pytest.mark.parametrize("balancer", sorted(TEMPLATES))
@pytest.mark.parametrize("derived", [False, True], ids=["shipped", "suite"])
def test_the_balancer_accepts_the_configs(tmp_path: Path, balancer: str, derived: bool) -> None:
    """The shipped file and the suite's copy of it, checked by the balancer itself."""
    if shutil.which(balancer) is None:
        pytest.skip(f"{balancer} is not installed")
    if balancer == "nginx" and not derived and os.geteuid() != 0:
        # nginx -t opens the log file the config names: the shipped one is the system's
        pytest.skip("the shipped nginx.conf logs to /var/log/nginx: checked as root only")
    config = TEMPLATES[balancer]
    if derived:
        template, nodes = config.read_text(), _nodes(tmp_path)
        config = tmp_path / config.name
        if balancer == "haproxy":
            config.write_text(haproxy_config(template, 7000, tmp_path / "s.sock", nodes))
        else:
            config.write_text(nginx_config(template, 7000, tmp_path, nodes))
    command = _check_command(balancer, config, tmp_path)
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_stream_replaced_by_a_new_epoch_excuses_what_every_subscriber_had() -> None:
    """A failover that lost unreplicated writes: the history is a new epoch; a publication
    it lacks is excused only if every subscription received it in an older epoch or was
    told it missed it, never because it was delivered in the history's own epoch."""
    history = [(1, "m3")]
    got_old = {"m1": "e1", "m2": "e1"}
    assert (
        missing_from_history(
            acks(2), history, [set(), set()], superseded=[got_old, got_old], epoch="e2"
        )
        == []
    )
    # one subscriber was told of m2 instead of receiving it: still accounted for
    assert (
        missing_from_history(
            acks(2), history, [set(), {"m2"}], superseded=[got_old, {"m1": "e1"}], epoch="e2"
        )
        == []
    )
    # one subscriber neither received m2 nor was told: reported
    assert missing_from_history(
        acks(2), history, [set(), set()], superseded=[got_old, {"m1": "e1"}], epoch="e2"
    ) == ["m2"]
    # same epoch: a hole in the history is a loss even if everybody got it live
    assert missing_from_history(
        acks(2), history, [set(), set()], superseded=[got_old, got_old], epoch="e1"
    ) == ["m1", "m2"]
