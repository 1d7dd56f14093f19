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
