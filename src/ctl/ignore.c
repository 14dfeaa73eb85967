/* ctl/ignore: git's ignore rules for a watched directory, through libgit2. */
#include "ctl/ignore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <git2.h>
#include <git2/sys/repository.h>

#include "core/alloc.h"

struct ctl_ignore {
    git_repository *repo;
    char *prefix; /* root relative to the repository's work tree: "" or "sub/dir/" */
    char *source;
    bool warned; /* a libgit2 failure was reported */
};

static const char *git_message(void)
{
    const git_error *e = git_error_last();
    return e && e->message ? e->message : "unknown libgit2 error";
}

/* The repository whose work tree holds root, and root's place in it; false
 * when there is none (or root sits where git would not look, such as inside
 * .git, or root itself is ignored there). */
static bool open_enclosing(struct ctl_ignore *ig, const char *root)
{
    git_repository *repo = NULL;
    if (git_repository_open_ext(&repo, root, 0, NULL) != 0) return false;
    const char *wd = git_repository_workdir(repo);
    char *real = wd ? realpath(wd, NULL) : NULL;
    size_t rl = real ? strlen(real) : 0;
    bool inside = real && strncmp(root, real, rl) == 0 && (root[rl] == '\0' || root[rl] == '/' ||
                                                          strcmp(real, "/") == 0);
    if (!inside) {
        free(real);
        git_repository_free(repo);
        return false;
    }
    const char *rest = root + rl + (root[rl] == '/');
    ig->prefix = *rest ? xasprintf("%s/", rest) : xstrdup("");
    if (*rest) {
        /* Watching a directory the repository ignores (a build output, a
         * vendored tree) would send nothing: its own .gitignore files are
         * what the user means then. */
        int ignored = 0;
        if (git_ignore_path_is_ignored(&ignored, repo, rest) == 0 && ignored) {
            fprintf(stderr, "aiproxyctl: context: %s is ignored by the git repository at %s; "
                            "using only the .gitignore files inside it\n", root, real);
            free(ig->prefix);
            ig->prefix = NULL;
            free(real);
            git_repository_free(repo);
            return false;
        }
    }
    ig->repo = repo;
    ig->source = xasprintf("the git repository at %s", real);
    free(real);
    return true;
}

struct ctl_ignore *ctl_ignore_new(const char *root, char *err, size_t errcap)
{
    if (git_libgit2_init() < 0) {
        snprintf(err, errcap, "libgit2 did not start: %s", git_message());
        return NULL;
    }
    struct ctl_ignore *ig = xcalloc(1, sizeof *ig);
    if (open_enclosing(ig, root)) return ig;
    /* Not in a work tree: libgit2 has no public call that evaluates ignore
     * rules without a repository, but an in-memory one (no object
     * database, no files) with root as its work tree reads root's
     * .gitignore files exactly as a repository's. */
    if (git_repository_new(&ig->repo) != 0 || git_repository_set_workdir(ig->repo, root, 0) != 0) {
        snprintf(err, errcap, "libgit2 cannot read the .gitignore rules of %s: %s", root,
                 git_message());
        ctl_ignore_free(ig);
        return NULL;
    }
    ig->prefix = xstrdup("");
    ig->source = xasprintf("the .gitignore files in %s (not a git work tree)", root);
    return ig;
}

void ctl_ignore_free(struct ctl_ignore *ig)
{
    if (!ig) return;
    git_repository_free(ig->repo);
    free(ig->prefix);
    free(ig->source);
    free(ig);
    git_libgit2_shutdown();
}

static bool has_git_segment(const char *rel)
{
    for (const char *s = rel; s; s = strchr(s, '/')) {
        if (*s == '/') s++;
        if (strncmp(s, ".git", 4) == 0 && (s[4] == '/' || s[4] == '\0')) return true;
    }
    return false;
}

bool ctl_ignore_match(struct ctl_ignore *ig, const char *rel)
{
    if (has_git_segment(rel)) return true;
    char *path = xasprintf("%s%s", ig->prefix, rel);
    int ignored = 0;
    int rc = git_ignore_path_is_ignored(&ignored, ig->repo, path);
    free(path);
    if (rc != 0) {
        if (!ig->warned)
            fprintf(stderr, "aiproxyctl: context: cannot evaluate the ignore rules for %s: %s "
                            "(the path is sent)\n", rel, git_message());
        ig->warned = true;
        return false;
    }
    return ignored != 0;
}

const char *ctl_ignore_source(const struct ctl_ignore *ig)
{
    return ig->source;
}
