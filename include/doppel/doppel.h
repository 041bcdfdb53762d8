/* doppel — a small deep-learning engine in C for generating and detecting synthetic media.
 * Include this one header to get the whole public API. */
#ifndef DOPPEL_H
#define DOPPEL_H
#include "core.h"
#include "graph.h"
#include "nn.h"
#include "optim.h"
#include "io.h"
#include "data.h"
#include "face.h"
#include "import.h"
#include "label.h"
#include "gan.h"
#endif
