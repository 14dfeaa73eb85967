/* ctl/ignore: which paths under a watched directory git would leave out, for
 * `aiproxyctl context watch` (SPEC section 8). The rules are libgit2's own
 * (git_ignore_path_is_ignored): every .gitignore file from the directory
 * down, with negation, anchoring, directory-only patterns and "**". When
 * the directory is inside a git work tree, the repository's rules apply as
 * git applies them (.gitignore files above the directory too,
 * .git/info/exclude, core.excludesFile); when it is not, an in-memory
 * repository (git_repository_new, nothing written to disk) is given the
 * directory as its work tree, so the same engine reads the .gitignore files
 * in it. Edited .gitignore files are picked up on the next question
 * (libgit2 re-reads a rules file whose stamp changed). */
#ifndef AIPROXY_CTL_IGNORE_H
#define AIPROXY_CTL_IGNORE_H

#include <stdbool.h>
#include <stddef.h>

struct ctl_ignore;

/* Rules for the directory `root` (an absolute path without symlinks, as
 * realpath(3) gives). Returns NULL with a message in err on failure (libgit2
 * could not start). Initialises libgit2; ctl_ignore_free shuts it down. */
struct ctl_ignore *ctl_ignore_new(const char *root, char *err, size_t errcap);
void ctl_ignore_free(struct ctl_ignore *ig); /* NULL is ignored */

/* Whether `rel` (relative to root: "a/b.c", no leading or trailing '/') is
 * left out: any path with a ".git" segment, or one the rules ignore
 * (directly or through an ignored parent directory). A file or directory
 * that no longer exists is judged as a file. */
bool ctl_ignore_match(struct ctl_ignore *ig, const char *rel);

/* Where the rules come from, for people: "the git repository at /x/" or
 * "the .gitignore files in /x (not a git work tree)". Borrowed. */
const char *ctl_ignore_source(const struct ctl_ignore *ig);

#endif
