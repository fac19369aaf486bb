/* A no-op unwinder for panic=abort builds of std (-Zbuild-std=std,panic_abort).
 *
 * std only calls these to try to print a backtrace (RUST_BACKTRACE); with no unwinder the
 * backtrace is empty and the panic message is still printed. Debian's gcc-12 libgcc_eh.a
 * cannot stand in on DWARF-unwinding targets (mips): it needs glibc's _dl_find_object. */
struct _Unwind_Context;
typedef int (*_Unwind_Trace_Fn)(struct _Unwind_Context *, void *);

int _Unwind_Backtrace(_Unwind_Trace_Fn fn, void *arg)
{
    (void)fn;
    (void)arg;
    return 5; /* _URC_END_OF_STACK */
}

unsigned long _Unwind_GetIP(struct _Unwind_Context *ctx)
{
    (void)ctx;
    return 0;
}

unsigned long _Unwind_GetIPInfo(struct _Unwind_Context *ctx, int *before)
{
    (void)ctx;
    *before = 0;
    return 0;
}

void *_Unwind_FindEnclosingFunction(void *pc)
{
    (void)pc;
    return 0;
}
