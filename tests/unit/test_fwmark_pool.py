import pytest

from kglb.fwmark import FwmarkExhausted, FwmarkPool


def test_new_manager_2_10_allocates_10_11_then_is_exhausted():
    pool = FwmarkPool(2, 10)
    assert pool.allocate("10.0.0.1") == 10
    assert pool.allocate("10.0.0.2") == 11
    with pytest.raises(FwmarkExhausted):
        pool.allocate("10.0.0.3")


def test_same_ip_shares_its_mark_and_is_refcounted():
    pool = FwmarkPool(2, 10)
    assert pool.allocate("10.0.0.1") == 10
    assert pool.allocate("10.0.0.1") == 10
    pool.release("10.0.0.1")
    assert pool.get("10.0.0.1") == 10  # one reference left
    pool.release("10.0.0.1")
    assert pool.get("10.0.0.1") is None
    assert pool.statistics() == (0, 2)


def test_released_mark_goes_to_the_end_of_the_pool():
    pool = FwmarkPool(3, 10)
    assert pool.allocate("a") == 10
    pool.release("a")
    assert pool.allocate("b") == 11
    assert pool.allocate("c") == 12
    assert pool.allocate("d") == 10  # the released one comes last
    with pytest.raises(FwmarkExhausted):
        pool.allocate("e")


def test_default_pool_is_kglbds_10000_to_14999():
    pool = FwmarkPool()
    assert pool.allocate("x") == 10000
    assert pool.statistics() == (1, 4999)


def test_releasing_an_unknown_ip_is_a_bug():
    with pytest.raises(KeyError):
        FwmarkPool(1, 10).release("10.0.0.1")
