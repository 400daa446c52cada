#!/bin/sh
# Builds a small repository whose one commit changes files in every way the diff parser meets,
# and prints `git diff --raw -p -z -M` of it (as the git adapter reads it). Its output is
# tests/data/multi_file.patch; tests/test_diff_parse_equivalence.py holds the parse of it equal
# to tests/data/multi_file.expected.json, which the parser before its rewrite produced.
#   sh tests/data/make_multi_file_patch.sh > tests/data/multi_file.patch
set -eu
R=$(mktemp -d)
trap 'rm -rf "$R"' EXIT
cd "$R"
git init -q -b main .
git config user.email dev@example.invalid
git config user.name dev
mkdir -p k8s tests src/pkg deploy docs
lines() { i=1; while [ "$i" -le "$2" ]; do echo "$1 $i"; i=$((i + 1)); done; }
printf 'apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n' > k8s/svc.yaml
printf 'def test_a():\n    pass\n\ndef test_b():\n    pass\n\nasync def test_c():\n    pass\n' > tests/test_x.py
printf 'func TestOne(t *testing.T) {}\nfunc TestTwo(t *testing.T) {}\n' > tests/one_test.go
printf 'x = 1\n' > src/a.py
printf 'target\n' > target.txt
ln -s target.txt link
printf 'bin\0ary' > blob.bin
printf 'echo hi\n' > run.sh
lines "line" 120 > src/big.py
lines "keep" 30 > src/old_name.py
lines "gone" 12 > src/deleted.py
lines "doc" 40 > docs/guide.md
n=0
while [ "$n" -lt 25 ]; do lines "mod$n value" 80 > "src/pkg/m$n.py"; n=$((n + 1)); done
git add -A
git commit -qm base
printf 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n---\nkind: ConfigMap\n' > k8s/svc.yaml
printf 'def test_a():\n    pass\n' > tests/test_x.py
printf 'func TestOne(t *testing.T) {}\n' > tests/one_test.go
printf 'x = 2\npassword = "hunter2hunter2"\nkey = "AKIAABCDEFGHIJKLMNOP"\n-----BEGIN RSA PRIVATE KEY-----\n' > src/a.py
printf 'slack = "xoxb-1234567890-abcdef"\ngoogle = "AIzaSyA1234567890abcdefghijklmnopqrstu"\n' >> src/a.py
printf 'openai = "sk-abcdefghijklmnopqrstuvwxyz0123456789AB"\n' >> src/a.py
printf 'gh = "ghp_0123456789abcdefghijklmnopqrstuvwxyz"\nauth_token: "abcdefgh12345678"\n' >> src/a.py
rm link
printf 'now a file\n' > link
rm target.txt
ln -s src/a.py target.txt
printf 'bin\0ary, changed' > blob.bin
chmod +x run.sh
git mv src/old_name.py src/new_name.py
sed -i 's/^keep 15$/kept 15/' src/new_name.py
git rm -q src/deleted.py
sed -i 's/^line 10$/line ten/; s/^line 40$/line forty/; s/^line 41$/line forty-one/; s/^line 100$//' src/big.py
printf 'api_key = "0123456789abcdef"\n' >> src/big.py
sed -i 's/^doc 3$/documentation 3/' docs/guide.md
n=0
while [ "$n" -lt 25 ]; do
  sed -i "s/^mod$n value $((n + 2))\$/changed $n/; s/^mod$n value 50\$/changed middle/" "src/pkg/m$n.py"
  if [ $((n % 3)) -eq 0 ]; then printf 'secret = "s3cr3t-value-%d"\n' "$n" >> "src/pkg/m$n.py"; fi
  if [ $((n % 4)) -eq 0 ]; then sed -i '1d' "src/pkg/m$n.py"; fi
  n=$((n + 1))
done
printf 'name\nwith newline\n' > "$(printf 'we\nird.txt')"
printf 'x\n' > "$(printf 'caf\303\251.py')"
printf 'tab\n' > "$(printf 'ta\tb "q".py')"
{ echo '// @generated'; lines "gen" 600; } > gen.go
printf 'no newline at end' > nonl.txt
: > empty.txt
printf '+++ b/fake\n--- a/fake\n@@ -1 +1 @@\ndiff --git a/x b/x\n' > tricky.patch
printf 'password = "in-a-file-named-for-it"\n' > deploy/password_rotation.py
printf 'secret: "abcdefghijklmnop"\n' > deploy/secrets.yaml
git add -A
git commit -qm "change everything"
git -c core.quotePath=false diff --raw -p -z -M --no-color --no-ext-diff --no-textconv \
  --src-prefix=a/ --dst-prefix=b/ HEAD~1 HEAD
