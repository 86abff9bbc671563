# escape=`
FROM mcr.example.com/base:1 `
    AS base
RUN echo one `
    two
COPY --chown=1000:1000 C:\temp\x /x
