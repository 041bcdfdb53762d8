/* Every op in the op table has at least one finite-difference gradient case;
 * an op without one fails the "coverage" test. Each case is its own cmocka
 * test, named "<op>: <variant>". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "test_ops_grad/cases.h"

static const gc_case *const families[] = {gc_cases_elementwise, gc_cases_shape, gc_cases_reduce,  gc_cases_matmul, gc_cases_conv,
                                          gc_cases_norm,        gc_cases_pool,  gc_cases_softmax, gc_cases_loss};
#define N_FAMILIES (sizeof families / sizeof families[0])

static void run_case(void **state) {
    const gc_case *c = *state;
    assert_int_equal(gc_run(c), 0);
}

static void every_op_has_a_case(void **state) {
    (void)state;
    int missing = 0;
    for (int op = 0; op < dp_op_count(); op++) {
        const char *name = dp_op_name(op);
        if (!strcmp(name, "input") || !strcmp(name, "param")) continue;
        int found = 0;
        for (size_t f = 0; f < N_FAMILIES; f++)
            for (const gc_case *c = families[f]; c->op; c++) found |= !strcmp(c->op, name);
        if (!found) {
            printf("  op '%s' has no gradient case\n", name);
            missing++;
        }
    }
    assert_int_equal(missing, 0);
}

int main(void) {
    size_t n = 1;
    for (size_t f = 0; f < N_FAMILIES; f++)
        for (const gc_case *c = families[f]; c->op; c++) n++;
    struct CMUnitTest *tests = calloc(n, sizeof *tests);
    char **names = calloc(n, sizeof *names);
    size_t k = 0;
    tests[k++] = (struct CMUnitTest)cmocka_unit_test(every_op_has_a_case);
    for (size_t f = 0; f < N_FAMILIES; f++)
        for (const gc_case *c = families[f]; c->op; c++) {
            names[k] = malloc(96);
            snprintf(names[k], 96, "%s: %s", c->op, c->label);
            tests[k] = (struct CMUnitTest){names[k], run_case, NULL, NULL, (void *)c};
            k++;
        }
    int rc = _cmocka_run_group_tests("op gradients", tests, k, NULL, NULL);
    for (size_t i = 0; i < k; i++) free(names[i]);
    free(names);
    free(tests);
    return rc;
}
