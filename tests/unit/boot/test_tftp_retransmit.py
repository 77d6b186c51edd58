import pytest

from arges.boot.tftpserver import retransmit_wait


@pytest.mark.parametrize(
    ("sends", "negotiated", "wait"),
    [
        (1, None, 1.0),
        (2, None, 2.0),
        (3, None, 4.0),
        (4, None, 8.0),
        (6, None, 8.0),
        (1, 3.0, 3.0),
        (5, 3.0, 3.0),
    ],
)
def test_waits_back_off_unless_the_client_negotiated_a_timeout(
    sends: int, negotiated: float | None, wait: float
) -> None:
    assert retransmit_wait(sends, negotiated, first=1.0, cap=8.0) == wait
