FROM alpine AS build
COPY --from=build /out /out
