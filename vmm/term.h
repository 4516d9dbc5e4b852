/* The host terminal: raw mode while the guest owns the console, restored on every exit path. */
#ifndef VMM_TERM_H
#define VMM_TERM_H

#include <stdbool.h>

/* Put fd (a terminal) in raw mode; no-op when fd is not a terminal. Returns whether it did. */
bool term_raw(int fd);
/* Restore the saved mode; safe to call more than once and from a fatal-signal handler. */
void term_restore(void);

#endif
