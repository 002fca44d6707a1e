/* A QEMU TCG plugin counting the guest instructions executed, with markers.
 *
 * Every translated block adds its instruction count to one counter when it runs (an inline
 * add: no callback, so the count costs little time). The guest marks points in its run with
 * lseek(-1, MAGIC, 0) -- a call that fails harmlessly with EBADF on any kernel -- and the
 * plugin records the counter at each one. At exit it writes one line per marker, then the
 * total, to the file named by the plugin argument out=PATH:  "mark <n>" and "total <n>".
 *
 * Limits: the inline add is not atomic, so a guest running several threads at once may lose
 * counts (the counting harness pins every engine to one thread); a block left early by an
 * exception counts whole. Built against qemu-plugin.h of Debian's qemu source package. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

#define MAGIC 0x45D6E0C7ULL
#define LSEEK_AARCH64 62
#define MAX_MARKS 4096

static uint64_t insns;
static uint64_t marks[MAX_MARKS];
static int n_marks;
static char out_path[4096] = "insn_count.txt";

static void tb_trans(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t a1,
                       uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6,
                       uint64_t a7, uint64_t a8)
{
    if (num == LSEEK_AARCH64 && a1 == UINT64_MAX && a2 == MAGIC && n_marks < MAX_MARKS)
        marks[n_marks++] = insns;
}

static void at_exit(qemu_plugin_id_t id, void *p)
{
    FILE *f = fopen(out_path, "w");
    if (!f)
        return;
    for (int i = 0; i < n_marks; i++)
        fprintf(f, "mark %" PRIu64 "\n", marks[i]);
    fprintf(f, "total %" PRIu64 "\n", insns);
    fclose(f);
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0 && strlen(argv[i] + 4) < sizeof(out_path))
            strcpy(out_path, argv[i] + 4);
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, tb_trans);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, at_exit, NULL);
    return 0;
}
