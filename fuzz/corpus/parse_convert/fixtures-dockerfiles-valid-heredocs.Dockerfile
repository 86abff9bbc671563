FROM alpine:3.20
ARG NAME=world
RUN <<EOF
echo "hello $NAME"
EOF
RUN cat <<-'SCRIPT' > /usr/local/bin/greet && chmod +x /usr/local/bin/greet
	#!/bin/sh
	echo "hi $1"
	SCRIPT
COPY <<CONF /etc/app.conf
name=$NAME
CONF
RUN <<PY
#!/usr/bin/env python3
print("shebang")
PY
