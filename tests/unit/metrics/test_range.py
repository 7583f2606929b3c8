"""PrometheusProvider.samples: range queries at a fixed step against a real Prometheus on loopback."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from step.errors import MetricError
from step.metrics.prometheus import PrometheusProvider
from tests.unit.metrics.test_prometheus import PROMETHEUS, Prometheus, _start

pytestmark = pytest.mark.skipif(PROMETHEUS is None, reason="needs Debian's prometheus package (make tools)")


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    prom = _start(tmp_path_factory.mktemp("prom-range"))
    yield prom
    prom.stop()


def test_one_sample_per_step_over_the_window(prometheus: Prometheus) -> None:
    values = PrometheusProvider(prometheus.url).samples("vector(7)", window_seconds=10, step_seconds=1)
    assert values == [7.0] * 11  # both ends included


def test_the_samples_are_at_the_step(prometheus: Prometheus) -> None:
    values = PrometheusProvider(prometheus.url).samples("vector(time())", window_seconds=20, step_seconds=5)
    assert len(values) == 5
    assert [b - a for a, b in itertools.pairwise(values)] == pytest.approx([5.0] * 4)


def test_no_series_is_no_samples(prometheus: Prometheus) -> None:
    provider = PrometheusProvider(prometheus.url)
    assert provider.samples('up{job="nothing-here"}', window_seconds=10, step_seconds=1) == []


def test_nan_points_are_dropped(prometheus: Prometheus) -> None:
    provider = PrometheusProvider(prometheus.url)
    assert provider.samples("vector(0) / 0", window_seconds=10, step_seconds=1) == []


def test_more_than_one_series_is_an_error(prometheus: Prometheus) -> None:
    query = 'label_replace(vector(1), "s", "a", "", "") or label_replace(vector(2), "s", "b", "", "")'
    with pytest.raises(MetricError, match="2 series returned"):
        PrometheusProvider(prometheus.url).samples(query, window_seconds=10, step_seconds=1)


def test_a_bad_query_or_step_is_an_error(prometheus: Prometheus) -> None:
    provider = PrometheusProvider(prometheus.url)
    with pytest.raises(MetricError, match=r"^error response: Status 400"):
        provider.samples("sum(", window_seconds=10, step_seconds=1)
    with pytest.raises(MetricError, match="positive window and step"):
        provider.samples("vector(1)", window_seconds=10, step_seconds=0)
