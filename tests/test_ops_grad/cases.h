/* Gradient cases, one table per op family (each file in this folder). */
#ifndef DP_GRAD_CASES_H
#define DP_GRAD_CASES_H
#include "util/gradcheck.h"
extern const gc_case gc_cases_elementwise[];
extern const gc_case gc_cases_shape[];
extern const gc_case gc_cases_reduce[];
extern const gc_case gc_cases_matmul[];
extern const gc_case gc_cases_conv[];
extern const gc_case gc_cases_norm[];
extern const gc_case gc_cases_pool[];
extern const gc_case gc_cases_softmax[];
extern const gc_case gc_cases_loss[];
#endif
