/*
 * test_clock.c - clock.c: the calendar against known dates and timegm(),
 * delays as libevent timeouts (rounded up, capped), ISO-8601 formatting,
 * and the runtime's clocks following a host clock.
 */
#include "testutil.h"

#include <stdio.h>
#include <string.h>

#include "faas_int.h"

static void test_days_known(void **state)
{
    (void)state;
    assert_int_equal(faas_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(faas_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(faas_days_from_civil(2000, 3, 1), 11017);
    assert_int_equal(faas_days_from_civil(2000, 2, 29), 11016);
    assert_int_equal(faas_days_from_civil(2024, 2, 29), 19782);
    /* 2015-08-30, the SigV4 examples' date: 1440892800 s. */
    assert_int_equal(faas_days_from_civil(2015, 8, 30) * 86400, 1440892800);
    assert_int_equal(faas_days_from_civil(2200, 1, 1) * 86400, 7258118400);
    assert_int_equal(faas_days_from_civil(1900, 3, 1), -25508);
    assert_int_equal(faas_days_from_civil(1600, 1, 1), -135140);
}

/* Every day over 1960-2200 against gmtime_r(), there and back; where
 * time_t has 32 bits (armhf), up to its last day, 2038-01-18. */
static void test_days_against_timegm(void **state)
{
    int64_t z, y, end = sizeof(time_t) < 8 ? INT32_MAX / 86400 : 84000;
    unsigned m, d;
    (void)state;
    if (end < 84000)
        print_message("32-bit time_t: days checked up to %lld, not 84000\n", (long long)end);
    for (z = -3653; z < end; z++) {
        time_t t = (time_t)(z * 86400);
        struct tm tm;
        gmtime_r(&t, &tm);
        assert_int_equal(faas_days_from_civil(tm.tm_year + 1900, (unsigned)tm.tm_mon + 1,
                                              (unsigned)tm.tm_mday),
                         z);
        faas_civil_from_days(z, &y, &m, &d);
        assert_int_equal(y, tm.tm_year + 1900);
        assert_int_equal(m, (unsigned)tm.tm_mon + 1);
        assert_int_equal(d, (unsigned)tm.tm_mday);
    }
}

static void test_timeouts(void **state)
{
    struct timeval tv;
    (void)state;
    tv = faas_ns_to_tv(0, 0);
    assert_int_equal(tv.tv_sec, 0);
    assert_int_equal(tv.tv_usec, 0);
    tv = faas_ns_to_tv(1, 0); /* rounded up: never early */
    assert_int_equal(tv.tv_sec, 0);
    assert_int_equal(tv.tv_usec, 1);
    tv = faas_ns_to_tv(1000, 0);
    assert_int_equal(tv.tv_usec, 1);
    tv = faas_ns_to_tv(2500000001u, 0);
    assert_int_equal(tv.tv_sec, 2);
    assert_int_equal(tv.tv_usec, 500001);
    tv = faas_ns_to_tv(UINT64_MAX, 86400000000000u); /* capped, no overflow */
    assert_int_equal(tv.tv_sec, 86400);
    assert_int_equal(tv.tv_usec, 0);
    tv = faas_ms_to_tv(0);
    assert_int_equal(tv.tv_sec, 0);
    assert_int_equal(tv.tv_usec, 0);
    tv = faas_ms_to_tv(61999);
    assert_int_equal(tv.tv_sec, 61);
    assert_int_equal(tv.tv_usec, 999000);
}

static void test_iso(void **state)
{
    char buf[32];
    (void)state;
    faas_iso_time_ms(0, buf, sizeof buf);
    assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
    faas_iso_time_ms(INT64_C(1764276180123456789), buf, sizeof buf);
    assert_string_equal(buf, "2025-11-27T20:43:00.123Z");
    faas_iso_time_ms(-1000000, buf, sizeof buf); /* before the epoch */
    assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
}

static void count_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ++*(int *)arg;
}

static void test_timer_rearm(void **state)
{
    struct event_base *base = event_base_new();
    struct event *ev;
    struct timeval when, now;
    int fired = 0, armed = 0;
    uint64_t at = 0;
    (void)state;

    assert_non_null(base);
    ev = event_new(base, -1, 0, count_cb, &fired);
    assert_non_null(ev);
    /* Far out: capped at a day. */
    faas_timer_rearm(ev, &armed, &at, UINT64_MAX - 1, 0);
    assert_int_equal(armed, 1);
    assert_true(at == UINT64_MAX - 1);
    assert_true(event_pending(ev, EV_TIMEOUT, &when));
    evutil_gettimeofday(&now, NULL);
    assert_true(when.tv_sec - now.tv_sec <= 86400 + 1 && when.tv_sec - now.tv_sec >= 86400 - 60);
    /* Disarmed. */
    faas_timer_rearm(ev, &armed, &at, UINT64_MAX, 0);
    assert_int_equal(armed, 0);
    assert_false(event_pending(ev, EV_TIMEOUT, NULL));
    /* Due now: fires once from the loop. */
    faas_timer_rearm(ev, &armed, &at, 5, 10);
    assert_true(event_pending(ev, EV_TIMEOUT, NULL));
    assert_true(tu_run_until(base, &fired, 1, 2000));
    assert_int_equal(fired, 1);
    /* The same time again while armed adds nothing: an event_del in
     * between shows it (armed says so, the event is not pending). */
    faas_timer_rearm(ev, &armed, &at, 1000000000000u, 0);
    event_del(ev);
    faas_timer_rearm(ev, &armed, &at, 1000000000000u, 0);
    assert_false(event_pending(ev, EV_TIMEOUT, NULL));
    event_free(ev);
    event_base_free(base);
}

static uint64_t fake_now(void *arg)
{
    return *(uint64_t *)arg;
}

static int64_t fake_wall(void *arg)
{
    return (int64_t)*(uint64_t *)arg * 2;
}

static void test_host_clock(void **state)
{
    struct event_base *base = event_base_new();
    struct faas_runtime_opts o = FAAS_RUNTIME_OPTS_INIT;
    struct faas_runtime *rt = NULL;
    uint64_t t = 42;
    (void)state;

    assert_non_null(base);
    o.clock.now_ns = fake_now;
    o.clock.wall_ns = fake_wall;
    o.clock.arg = &t;
    assert_int_equal(faas_runtime_new(&rt, base, &o), 0);
    assert_int_equal(faas_now_ns(rt), 42);
    assert_int_equal(faas_wall_ns(rt), 84);
    t = 1000;
    assert_int_equal(faas_now_ns(rt), 1000);
    assert_int_equal(faas_wall_ns(rt), 2000);
    faas_runtime_free(rt);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_days_known),
        cmocka_unit_test(test_days_against_timegm),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_iso),
        cmocka_unit_test(test_timer_rearm),
        cmocka_unit_test(test_host_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
