#include "test_ops_grad/cases.h"

const gc_case gc_cases_loss[] = {
    {0},
};
