/* Regression tests for what fuzzing found (docs/security.md, Findings). Every crashing or
 * hanging input is also kept in fuzz/corpus/<target>/regress-* and replayed by the
 * fuzz_replay_<target> tests; the checks here say what the right answer is. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "doppel/detect.h"
#include "doppel/doppel.h"
#include "util/files.h"

/* An allocator that counts the bytes in use and their peak. */
typedef struct counter {
    size_t now, peak;
} counter;

static void *count_alloc(size_t size, size_t align, void *user) {
    counter *c = user;
    void *p = NULL;
    if (posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, size + 64) != 0) return NULL;
    *(size_t *)p = size;
    c->now += size;
    if (c->now > c->peak) c->peak = c->now;
    return (char *)p + 64;
}

static void count_free(void *ptr, void *user) {
    counter *c = user;
    char *p = (char *)ptr - 64;
    c->now -= *(size_t *)(void *)p;
    free(p);
}

static unsigned char *corpus(const char *target, const char *name, size_t *n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/fuzz/corpus/%s/%s", DP_SOURCE_DIR, target, name);
    unsigned char *b = dp_test_read_file(path, n);
    if (!b) fail_msg("%s is missing", path);
    return b;
}

/* fuzz_image, 2026-11-27: a 580-byte PNG whose second tEXt chunk claims 822,083,598 bytes made
 * libpng allocate (and ASan clear) 800 MB before the read found the file short. The chunk
 * lengths are now checked against the bytes present first, and libpng allocates through the
 * context (so this counter sees it). */
static void png_chunk_length_bomb(void **s) {
    (void)s;
    counter c = {0, 0};
    dp_allocator al = {count_alloc, count_free, &c};
    dp_ctx *ctx;
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 1, .allocator = &al}, &ctx), DP_OK);
    size_t n;
    unsigned char *b = corpus("image", "regress-png-text-chunk-822mb", &n);
    size_t base = c.peak;
    dp_image img;
    assert_int_equal(dp_image_decode(ctx, b, n, "bomb.png", 0, NULL, &img), DP_ERR_FORMAT);
    printf("%s (peak %zu bytes allocated for it)\n", dp_ctx_error(ctx), c.peak - base);
    assert_non_null(strstr(dp_ctx_error(ctx), "bomb.png"));
    assert_non_null(strstr(dp_ctx_error(ctx), "claims 822083598 bytes"));
    assert_true(c.peak - base < ((size_t)1 << 20));
    /* A good PNG still decodes, through the counting allocator. */
    dp_image g;
    assert_int_equal(dp_image_alloc(ctx, 3, 9, 7, &g), DP_OK);
    const char *tmp = "/tmp/doppel-fuzz-regress.png";
    assert_int_equal(dp_image_save_png(ctx, tmp, &g), DP_OK);
    dp_image_free(ctx, &g);
    assert_int_equal(dp_image_load(ctx, tmp, 0, NULL, &img), DP_OK);
    assert_int_equal(img.width, 7);
    dp_image_free(ctx, &img);
    remove(tmp);
    free(b);
    dp_ctx_free(ctx);
    assert_int_equal(c.now, 0);
}

/* Found reading the crop policy parser while writing fuzz_model: work/size were converted to int
 * from any double (1e300, nan: undefined behaviour). */
static void crop_policy_out_of_range(void **s) {
    (void)s;
    dp_ctx *ctx;
    assert_int_equal(dp_ctx_new(&(dp_ctx_opts){.threads = 1}, &ctx), DP_OK);
    dp_crop_policy p;
    const char *bad[] = {"inner=0.8,margin=0.05,shift=0.05,work=1e300,size=256",
                         "inner=0.8,margin=0.05,shift=0.05,work=64,size=nan",
                         "inner=0.8,margin=0.05,shift=0.05,work=-3e9,size=256"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(dp_crop_policy_parse(ctx, bad[i], &p), DP_ERR_FORMAT);
        assert_non_null(strstr(dp_ctx_error(ctx), "out of range"));
    }
    assert_int_equal(dp_crop_policy_parse(ctx, "inner=0.8,margin=0.05,shift=0.05,work=64,size=256", &p), DP_OK);
    dp_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(png_chunk_length_bomb),
        cmocka_unit_test(crop_policy_out_of_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
