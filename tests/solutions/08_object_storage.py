# Reference solutions of lab 08 (object storage); tests/test_labs_graded.py fills them in and expects full points.

# %% solution 08.1
store.exchange("PUT", storage_url + "/homework", auth)
store.exchange("PUT", storage_url + "/homework/report.txt",
               {**auth, "Content-Type": "text/plain", "X-Object-Meta-Course": "cloud", "X-Object-Meta-Week": "8"},
               "My report on object storage.\n")

# %% solution 08.2
# a POST replaces all user metadata: send the old items with the new one
store.exchange("POST", storage_url + "/homework/report.txt",
               {**auth, "X-Object-Meta-Course": "cloud", "X-Object-Meta-Week": "8", "X-Object-Meta-Reviewed": "yes"})

# %% solution 08.3
kept = s3.head_object(Bucket="homework", Key="report.txt")["Metadata"]
s3.copy_object(Bucket="homework", Key="report.txt", CopySource={"Bucket": "homework", "Key": "report.txt"},
               MetadataDirective="REPLACE", ContentType="text/plain", Metadata={**kept, "grade": "A"})

# %% solution 08.4
def answer(parts):
    joined = b"".join(hashlib.md5(part).digest() for part in parts)
    return f"{hashlib.md5(joined).hexdigest()}-{len(parts)}"

# %% solution 08.5
s3.create_bucket(Bucket="drafts")
s3.put_bucket_versioning(Bucket="drafts", VersioningConfiguration={"Status": "Enabled"})
first_draft = s3.put_object(Bucket="drafts", Key="essay.txt", Body=b"Object storage keeps files.\n")
s3.put_object(Bucket="drafts", Key="essay.txt", Body=b"Object storage keeps files and metadata.\n")
# restore = copy the old version onto the key: a new latest version, the second draft kept below it
s3.copy_object(Bucket="drafts", Key="essay.txt",
               CopySource={"Bucket": "drafts", "Key": "essay.txt", "VersionId": first_draft["VersionId"]})

# %% solution 08.6
s3.put_object(Bucket="drafts", Key="old-notes.txt", Body=b"notes I no longer need\n")
answer = s3.delete_object(Bucket="drafts", Key="old-notes.txt")["VersionId"]

# %% solution 08.7
s3.create_bucket(Bucket="public-site")
s3.put_object(Bucket="public-site", Key="index.html", Body=b"<h1>my site</h1>\n", ContentType="text/html",
              ACL="public-read")
s3.put_object(Bucket="public-site", Key="secret.txt", Body=b"only for me\n")
answer = store.url + "/public-site/index.html"
