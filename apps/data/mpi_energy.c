/* A tiny MPI program for tests and examples: mpi_energy INPUT OUTPUT [SECONDS].
 *
 * Every rank reads "x = <a> <b> ..." from INPUT, computes its share of
 * sum_i (x_i - 1)^2 (rank r takes i = r, r + size, ...) and writes
 * rank-<r>.txt ("rank <r> of <size> on <host> pid <pid>"); rank 0 reduces the
 * shares and writes "energy = %.17g" and "ranks = <size>" to OUTPUT. With SECONDS,
 * every rank first sleeps that long (a stand-in for work, for benchmarks). */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc != 3 && argc != 4) {
        if (rank == 0) fprintf(stderr, "usage: mpi_energy INPUT OUTPUT [SECONDS]\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    if (argc == 4) usleep((useconds_t)(strtod(argv[3], NULL) * 1e6));
    double x[64];
    int d = 0;
    FILE *in = fopen(argv[1], "r");
    char word[64];
    if (!in || fscanf(in, " x = ") != 0) MPI_Abort(MPI_COMM_WORLD, 3);
    while (d < 64 && fscanf(in, "%63s", word) == 1) x[d++] = strtod(word, NULL);
    fclose(in);
    if (d == 0) MPI_Abort(MPI_COMM_WORLD, 4);
    double share = 0.0, total = 0.0;
    for (int i = rank; i < d; i += size) share += (x[i] - 1.0) * (x[i] - 1.0);
    char host[256] = "?", name[64];
    gethostname(host, sizeof host);
    snprintf(name, sizeof name, "rank-%d.txt", rank);
    FILE *mine = fopen(name, "w");
    if (!mine) MPI_Abort(MPI_COMM_WORLD, 5);
    fprintf(mine, "rank %d of %d on %s pid %d\n", rank, size, host, (int)getpid());
    fclose(mine);
    MPI_Reduce(&share, &total, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        FILE *out = fopen(argv[2], "w");
        if (!out) MPI_Abort(MPI_COMM_WORLD, 6);
        fprintf(out, "energy = %.17g\nranks = %d\n", total, size);
        fclose(out);
    }
    MPI_Finalize();
    return 0;
}
